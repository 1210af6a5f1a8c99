"""A synthetic connected-digits corpus in LibriSpeech layout.

``make_digits_corpus`` speaks random digit strings ("ONE OH SEVEN") with
eSpeak NG (see ``speechbrain_prune.data.espeak``) and writes them as
LibriSpeech does::

    out_dir/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/
        <spk>-<chapter>-<utt:04d>.flac         (16 kHz, 16-bit, mono)
        <spk>-<chapter>.trans.txt              ("<utt_id> ONE OH SEVEN")
    out_dir/SPEAKERS.TXT, out_dir/corpus.json

A speaker is one eSpeak voice (accent + variant) with its own speaking rate,
pitch and intonation range. Every split has its own speakers, and dev and
test speakers use voice variants that no training speaker uses, so the
corpus measures speaker-independent recognition. Only pip packages are
needed, which makes the corpus the default data of tests and examples.

``prepare_csv`` writes the SpeechBrain csv files (the columns of
``librispeech_prepare.py``: ID, duration, wav, spk_id, wrd) for any corpus
in this layout, e.g. real recordings as well.

Authors
 * speechbrain-prune team 2026
"""

import csv
import json
import logging
import os
import random
import shutil
import time

import numpy as np
import soundfile as sf
from tqdm import tqdm

from speechbrain_prune.data.manifest import read_json, up_to_date

__all__ = [
    "ACCENTS",
    "SPLITS",
    "VARIANTS",
    "VOCABULARY",
    "make_digits_corpus",
    "prepare_csv",
]

logger = logging.getLogger(__name__)

#: Words of the transcripts; eSpeak speaks their lower-case form.
VOCABULARY = (
    "ZERO",
    "ONE",
    "TWO",
    "THREE",
    "FOUR",
    "FIVE",
    "SIX",
    "SEVEN",
    "EIGHT",
    "NINE",
    "OH",
)
#: Split folders, in LibriSpeech's names, so stock recipes find them.
SPLITS = ("train-clean-100", "dev-clean", "test-clean")
#: eSpeak English voices; all splits draw from all of them. ("en" is
#: British English: eSpeak NG has no voice named "en-gb".)
ACCENTS = ("en-us", "en", "en-us-nyc", "en-gb-scotland")
#: Voice variants (and the sex to report) of each split. The splits share
#: none, so dev and test voices are unseen in training. John and Paul are
#: left out because they clip.
VARIANTS = {
    "train-clean-100": {
        "m1": "M",
        "m2": "M",
        "m3": "M",
        "m4": "M",
        "m7": "M",
        "robert": "M",
        "adam": "M",
        "david": "M",
        "klatt3": "M",
        "f1": "F",
        "f2": "F",
        "f3": "F",
        "belinda": "F",
        "aunty": "F",
        "shelby": "F",
    },
    "dev-clean": {"m5": "M", "grandpa": "M", "f4": "F", "linda": "F"},
    "test-clean": {"m6": "M", "edward": "M", "f5": "F", "grandma": "F"},
}
#: Inclusive ranges that speakers' settings are drawn from.
RATE_RANGE = (130, 200)  # words per minute
PITCH_RANGE = (25, 75)
INTONATION_RANGE = (30, 80)
#: An utterance's rate differs from its speaker's by up to this much, as a
#: person's tempo varies between sentences.
RATE_JITTER = 10
#: Chance of a short pause (a comma for eSpeak) between two words.
PAUSE_PROBABILITY = 0.1
#: Peak level of an utterance, dBFS, and its silent margins, seconds.
LEVEL_RANGE_DB = (-12.0, -3.0)
MARGIN_RANGE_S = (0.05, 0.3)
#: Utterances per chapter folder.
CHAPTER_SIZE = 100
SAMPLE_RATE = 16000
MANIFEST = "corpus.json"
# Bump whenever the same parameters would give different files, so that
# cached corpora are regenerated.
_GENERATOR_VERSION = 2
_INCOMPLETE = ".incomplete"


def make_digits_corpus(
    out_dir,
    n_train=1000,
    n_dev=200,
    n_test=200,
    seed=1,
    n_train_speakers=15,
    n_dev_speakers=4,
    n_test_speakers=4,
    min_words=2,
    max_words=5,
    vocabulary=VOCABULARY,
    noise_db=-60.0,
    progress=True,
):
    """Synthesise a connected-words corpus in LibriSpeech layout (cached).

    The output depends only on the arguments (``progress`` aside): the
    transcripts and speakers always, the audio too when generated in a fresh
    process (eSpeak's pitch flutter carries over between calls). If
    ``out_dir`` already holds a corpus made with the same arguments, it is
    returned at once; one made with other arguments is replaced. A folder
    that is not empty and was not made here raises an error.

    Arguments
    ---------
    out_dir : str
        Folder to write the corpus into (created if needed).
    n_train, n_dev, n_test : int
        Number of utterances in train-clean-100, dev-clean and test-clean.
    seed : int
        Seed of all random choices.
    n_train_speakers, n_dev_speakers, n_test_speakers : int
        Number of speakers per split (fewer if a split has fewer
        utterances). Utterances are spread evenly over speakers.
    min_words, max_words : int
        Inclusive range of the number of words in an utterance.
    vocabulary : sequence of str
        Upper-case words to draw from, uniformly and with repetition.
    noise_db : float or None
        RMS level of white noise added throughout, in dBFS, so that no frame
        is digitally silent; None adds none.
    progress : bool
        Whether to show a tqdm progress bar.

    Returns
    -------
    dict
        The manifest also saved as ``out_dir/corpus.json``: ``params``,
        ``speakers`` (id, split, voice, rate, pitch, range, sex, minutes),
        ``utterances`` and ``hours`` per split, ``espeak_version`` and
        ``seconds`` taken.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> manifest = make_digits_corpus(
    ...     tmp, n_train=2, n_dev=1, n_test=1, progress=False
    ... )
    >>> manifest["utterances"]
    {'train-clean-100': 2, 'dev-clean': 1, 'test-clean': 1}
    >>> sorted(os.listdir(os.path.join(tmp, "test-clean")))
    ['3001']
    >>> shutil.rmtree(tmp)
    """
    params = _normalise(
        {
            "n_train": n_train,
            "n_dev": n_dev,
            "n_test": n_test,
            "seed": seed,
            "n_train_speakers": n_train_speakers,
            "n_dev_speakers": n_dev_speakers,
            "n_test_speakers": n_test_speakers,
            "min_words": min_words,
            "max_words": max_words,
            "vocabulary": list(vocabulary),
            "noise_db": noise_db,
        }
    )
    _check_params(params)
    key = {"generator_version": _GENERATOR_VERSION, "params": params}
    key["design"] = _normalise(_design())
    manifest_path = os.path.join(out_dir, MANIFEST)
    existing = read_json(manifest_path)
    if up_to_date(existing, key):
        logger.info("Synthetic corpus in %s is up to date", out_dir)
        return existing
    _prepare_out_dir(out_dir, existing is not None)

    start = time.time()
    speakers, utterances = _plan(params)
    tts = _synthesizer()
    seconds = {name: 0.0 for name in list(speakers) + list(SPLITS)}
    for utt in tqdm(
        utterances,
        desc="Synthesising digits corpus",
        unit="utt",
        disable=not progress,
    ):
        pcm = _render(tts, speakers[utt["speaker"]], utt, params)
        folder = os.path.join(out_dir, utt["split"], *utt["id"].split("-")[:2])
        os.makedirs(folder, exist_ok=True)
        sf.write(
            os.path.join(folder, utt["id"] + ".flac"),
            pcm,
            SAMPLE_RATE,
            format="FLAC",
            subtype="PCM_16",
        )
        seconds[utt["speaker"]] += len(pcm) / SAMPLE_RATE
        seconds[utt["split"]] += len(pcm) / SAMPLE_RATE
    _write_transcripts(out_dir, utterances)

    for spk in speakers.values():
        spk["minutes"] = round(seconds[spk["id"]] / 60, 3)
    _write_speakers_txt(out_dir, speakers)
    manifest = dict(key)
    manifest["espeak_version"] = tts.version
    manifest["speakers"] = list(speakers.values())
    manifest["utterances"] = {
        split: sum(u["split"] == split for u in utterances) for split in SPLITS
    }
    manifest["hours"] = {
        split: round(seconds[split] / 3600, 4) for split in SPLITS
    }
    manifest["seconds"] = round(time.time() - start, 2)
    # The manifest is written last and atomically: its presence certifies a
    # complete corpus.
    _write_json(manifest_path, manifest)
    os.remove(os.path.join(out_dir, _INCOMPLETE))
    logger.info(
        "Synthesised %d utterances (%.2f h) into %s in %.1f s",
        len(utterances),
        sum(manifest["hours"].values()),
        out_dir,
        manifest["seconds"],
    )
    return manifest


def prepare_csv(data_folder, save_folder, splits=SPLITS):
    """Write SpeechBrain csv files for a corpus in LibriSpeech layout.

    The files have the columns of SpeechBrain's ``librispeech_prepare.py``
    (ID, duration, wav, spk_id, wrd; spk_id is "<speaker>-<chapter>"), one
    row per flac file sorted by ID, with absolute wav paths. A csv file that
    already exists is kept as it is.

    Arguments
    ---------
    data_folder : str
        Corpus root, holding one folder per split.
    save_folder : str
        Folder for the csv files (created if needed).
    splits : sequence of str
        Split folders to prepare; each gives ``save_folder/<split>.csv``.

    Returns
    -------
    dict
        Path of the csv file of each split.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> _ = make_digits_corpus(
    ...     tmp, n_train=2, n_dev=1, n_test=1, progress=False
    ... )
    >>> csv_files = prepare_csv(tmp, os.path.join(tmp, "csv"))
    >>> with open(csv_files["dev-clean"]) as f:
    ...     print(f.readline().strip())
    ID,duration,wav,spk_id,wrd
    >>> shutil.rmtree(tmp)
    """
    os.makedirs(save_folder, exist_ok=True)
    csv_files = {}
    for split in splits:
        csv_file = os.path.join(save_folder, split + ".csv")
        csv_files[split] = csv_file
        if os.path.exists(csv_file):
            logger.info("%s exists, not recreating it", csv_file)
            continue
        rows = _split_rows(os.path.join(data_folder, split))
        # Written under another name first, so that an interrupted run does
        # not leave a partial file that the next run would keep.
        partial = csv_file + ".partial"
        with open(partial, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["ID", "duration", "wav", "spk_id", "wrd"])
            writer.writerows(rows)
        os.replace(partial, csv_file)
        logger.info("Wrote %s (%d utterances)", csv_file, len(rows))
    return csv_files


def _split_rows(split_dir):
    """Rows (ID, duration, wav, spk_id, wrd) of one split folder."""
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"No split folder {split_dir}")
    transcripts, flac_files = {}, []
    for root, _, files in os.walk(split_dir):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".trans.txt"):
                with open(path) as f:
                    for line in f:
                        utt_id, _, text = line.strip().partition(" ")
                        if utt_id:
                            transcripts[utt_id] = text
            elif name.endswith(".flac"):
                flac_files.append(path)
    if not flac_files:
        raise FileNotFoundError(f"No flac files under {split_dir}")
    rows = []
    for path in flac_files:
        utt_id = os.path.basename(path)[: -len(".flac")]
        if utt_id not in transcripts:
            raise ValueError(f"No transcript for {path}")
        info = sf.info(path)
        rows.append(
            [
                utt_id,
                str(info.frames / info.samplerate),
                os.path.abspath(path),
                "-".join(utt_id.split("-")[:2]),
                transcripts[utt_id],
            ]
        )
    return sorted(rows)


def _design():
    """Module-level choices that shape the corpus, part of the cache key."""
    return {
        "accents": ACCENTS,
        "variants": VARIANTS,
        "rate_range": RATE_RANGE,
        "pitch_range": PITCH_RANGE,
        "intonation_range": INTONATION_RANGE,
        "rate_jitter": RATE_JITTER,
        "pause_probability": PAUSE_PROBABILITY,
        "level_range_db": LEVEL_RANGE_DB,
        "margin_range_s": MARGIN_RANGE_S,
        "chapter_size": CHAPTER_SIZE,
        "sample_rate": SAMPLE_RATE,
    }


def _check_params(params):
    for name in ("n_train", "n_dev", "n_test"):
        if params[name] < 1:
            raise ValueError(f"{name} must be at least 1")
    for name in ("n_train_speakers", "n_dev_speakers", "n_test_speakers"):
        # Speaker ids are <split digit><3 digits>.
        if not 1 <= params[name] <= 999:
            raise ValueError(f"{name} must be in [1, 999]")
    if not 1 <= params["min_words"] <= params["max_words"]:
        raise ValueError("need 1 <= min_words <= max_words")
    words = params["vocabulary"]
    if not words or any(not w or w != w.upper() or " " in w for w in words):
        raise ValueError("vocabulary must be non-empty upper-case words")


def _plan(params):
    """Draw speakers and utterances; no audio, so it is cheap and exact."""
    rng = random.Random(params["seed"])
    sizes = {
        "train-clean-100": ("n_train", "n_train_speakers"),
        "dev-clean": ("n_dev", "n_dev_speakers"),
        "test-clean": ("n_test", "n_test_speakers"),
    }
    speakers, utterances = {}, []
    for split_index, split in enumerate(SPLITS):
        n_utts = params[sizes[split][0]]
        n_speakers = min(params[sizes[split][1]], n_utts)
        variants = sorted(VARIANTS[split])
        rng.shuffle(variants)
        taken = set()
        for k in range(n_speakers):
            # Cycling through the shuffled variants uses each of them
            # before any is used twice.
            variant = variants[k % len(variants)]
            while True:
                voice = f"{rng.choice(ACCENTS)}+{variant}"
                rate = rng.randint(*RATE_RANGE)
                pitch = rng.randint(*PITCH_RANGE)
                if (voice, rate, pitch) not in taken:
                    break
            taken.add((voice, rate, pitch))
            spk_id = str((split_index + 1) * 1000 + k + 1)
            speakers[spk_id] = {
                "id": spk_id,
                "split": split,
                "voice": voice,
                "rate": rate,
                "pitch": pitch,
                "range": rng.randint(*INTONATION_RANGE),
                "sex": VARIANTS[split][variant],
            }
            count = n_utts // n_speakers + (k < n_utts % n_speakers)
            for u in range(count):
                chapter = f"{spk_id}{u // CHAPTER_SIZE:02d}"
                utterances.append(
                    _plan_utterance(rng, params, split, spk_id, chapter, u)
                )
    return speakers, utterances


def _plan_utterance(rng, params, split, spk_id, chapter, index):
    n_words = rng.randint(params["min_words"], params["max_words"])
    words = [rng.choice(params["vocabulary"]) for _ in range(n_words)]
    spoken = words[0].lower()
    for word in words[1:]:
        pause = rng.random() < PAUSE_PROBABILITY
        spoken += (", " if pause else " ") + word.lower()
    return {
        "id": f"{spk_id}-{chapter}-{index % CHAPTER_SIZE:04d}",
        "split": split,
        "speaker": spk_id,
        "words": " ".join(words),
        "spoken": spoken,
        "rate_offset": rng.randint(-RATE_JITTER, RATE_JITTER),
        "level_db": rng.uniform(*LEVEL_RANGE_DB),
        "margins": [rng.uniform(*MARGIN_RANGE_S) for _ in range(2)],
        "noise_seed": rng.getrandbits(31),
    }


def _render(tts, speaker, utt, params):
    """Speak one planned utterance; return 16-bit samples."""
    wav, _ = tts.synthesize(
        utt["spoken"],
        voice=speaker["voice"],
        rate=speaker["rate"] + utt["rate_offset"],
        pitch=speaker["pitch"],
        pitch_range=speaker["range"],
        seed=utt["noise_seed"],
    )
    peak = float(np.abs(wav).max()) if len(wav) else 0.0
    if peak == 0.0:
        raise RuntimeError(f"eSpeak produced silence for {utt['spoken']!r}")
    wav = wav.astype(np.float64) * (10 ** (utt["level_db"] / 20) / peak)
    lead, trail = (int(m * SAMPLE_RATE) for m in utt["margins"])
    wav = np.concatenate([np.zeros(lead), wav, np.zeros(trail)])
    if params["noise_db"] is not None:
        noise = np.random.default_rng(utt["noise_seed"]).standard_normal(
            len(wav)
        )
        wav += 10 ** (params["noise_db"] / 20) * noise
    return np.clip(np.round(wav * 32767), -32768, 32767).astype(np.int16)


def _write_transcripts(out_dir, utterances):
    chapters = {}
    for utt in utterances:
        spk, chapter, _ = utt["id"].split("-")
        path = os.path.join(
            out_dir, utt["split"], spk, chapter, f"{spk}-{chapter}.trans.txt"
        )
        chapters.setdefault(path, []).append(f"{utt['id']} {utt['words']}\n")
    for path, lines in chapters.items():
        with open(path, "w") as f:
            f.writelines(lines)


def _write_speakers_txt(out_dir, speakers):
    lines = ["; ID  |SEX| SUBSET           |MINUTES| NAME (eSpeak NG voice)\n"]
    for spk in speakers.values():
        name = (
            f"{spk['voice']} rate={spk['rate']} pitch={spk['pitch']} "
            f"range={spk['range']}"
        )
        lines.append(
            f"{spk['id']:<5}| {spk['sex']} | {spk['split']:<16} | "
            f"{spk['minutes']:5.2f} | {name}\n"
        )
    with open(os.path.join(out_dir, "SPEAKERS.TXT"), "w") as f:
        f.writelines(lines)


def _prepare_out_dir(out_dir, has_manifest):
    """Empty ``out_dir`` of an outdated or unfinished corpus of ours."""
    incomplete = os.path.join(out_dir, _INCOMPLETE)
    if has_manifest or os.path.exists(incomplete):
        logger.info("Replacing the synthetic corpus in %s", out_dir)
        # The marker goes first, so an interruption from here on leaves a
        # folder that is still recognised as ours.
        open(incomplete, "w").close()
        for name in (MANIFEST, "SPEAKERS.TXT"):
            if os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
        for split in SPLITS:
            shutil.rmtree(os.path.join(out_dir, split), ignore_errors=True)
    elif os.path.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(
            f"{out_dir} is not empty and holds no corpus made by "
            "make_digits_corpus; refusing to write into it"
        )
    os.makedirs(out_dir, exist_ok=True)
    open(incomplete, "w").close()


def _synthesizer():
    # Imported here so that prepare_csv works without espeakng_loader.
    from speechbrain_prune.data.espeak import EspeakSynthesizer

    return EspeakSynthesizer(sample_rate=SAMPLE_RATE)


def _normalise(obj):
    """JSON round trip, so values compare equal to a loaded manifest."""
    return json.loads(json.dumps(obj))


def _write_json(path, obj):
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(partial, path)
