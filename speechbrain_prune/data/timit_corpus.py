"""A small synthetic corpus in TIMIT layout, spoken by eSpeak NG.

``make_timit_corpus`` speaks short random sentences from a small vocabulary
(``WORDS``) and writes them as the LDC release of TIMIT lays them out::

    out_dir/{TRAIN,TEST}/DR<n>/<speaker>/<utterance>.{WAV,PHN,WRD,TXT}

so that ``speechbrain_prune.data.timit.prepare_timit`` and the TIMIT recipes
run on it without any download. Dev and test speakers carry IDs of the
standard development and core test lists, training speakers invented IDs.

The phone labels are eSpeak's own phonemes for each word (its ASCII
mnemonics, mapped to TIMIT symbols by ``ESPEAK_TO_TIMIT``, stops preceded by
their closure as in TIMIT), so the label sequence is what the synthesiser
was asked to say. The boundaries are not: the speech between the leading
and trailing silence (``h#``) is shared equally among the phones. The corpus
checks pipelines (data preparation, training, pruning, PER), not phone
alignment, and is no stand-in for TIMIT's accuracy.

Authors
 * speechbrain-prune team 2026
"""

import json
import os
import random

import numpy as np
import soundfile as sf

from speechbrain_prune.data.manifest import read_json, up_to_date
from speechbrain_prune.data.timit import CORE_TEST_SPEAKERS, DEV_SPEAKERS

__all__ = ["ESPEAK_TO_TIMIT", "WORDS", "make_timit_corpus", "word_phones"]

#: The vocabulary of the sentences.
WORDS = (
    "the a cat dog sat on red big green fish house good run she bought "
    "noon seven one three five nine zero water light boy ship thin page "
    "judge yes van measure sing you"
).split()

#: eSpeak NG (en-us) phoneme mnemonics -> TIMIT phones (stops and
#: affricates without their closure: see ``_CLOSURES``).
ESPEAK_TO_TIMIT = {
    "@": ("ax",),
    "@2": ("ax",),
    "3": ("axr",),
    "0": ("aa",),
    "a": ("ae",),
    "aI": ("ay",),
    "aU": ("aw",),
    "E": ("eh",),
    "eI": ("ey",),
    "i:": ("iy",),
    "i@": ("ih",),  # before r, as in "zero"
    "I": ("ih",),
    "O2": ("ao",),
    "O:": ("ao",),
    "OI": ("oy",),
    "oU": ("ow",),
    "U": ("uh",),
    "u:": ("uw",),
    "V": ("ah",),
    "b": ("b",),
    "d": ("d",),
    "D": ("dh",),
    "dZ": ("jh",),
    "f": ("f",),
    "g": ("g",),
    "h": ("hh",),
    "j": ("y",),
    "k": ("k",),
    "l": ("l",),
    "m": ("m",),
    "n": ("n",),
    "N": ("ng",),
    "p": ("p",),
    "r": ("r",),
    "s": ("s",),
    "S": ("sh",),
    "t": ("t",),
    "t#": ("dx",),
    "T": ("th",),
    "tS": ("ch",),
    "v": ("v",),
    "w": ("w",),
    "z": ("z",),
    "Z": ("zh",),
}
_CLOSURES = {
    "b": "bcl",
    "d": "dcl",
    "g": "gcl",
    "p": "pcl",
    "t": "tcl",
    "k": "kcl",
    "ch": "tcl",
    "jh": "dcl",
}
#: Stress and syllable marks of eSpeak's output, not phonemes.
_MARKS = "',%="

#: eSpeak voice variants of each split's speakers, by sex; the splits share
#: none, so dev and test voices are unseen in training.
_VARIANTS = {
    "train": {"M": ("m1", "m2", "m3", "m4"), "F": ("f1", "f2", "f3")},
    "dev": {"M": ("m5", "m7"), "F": ("f4",)},
    "test": {"M": ("m6", "m8"), "F": ("f5",)},
}
_SAMPLE_RATE = 16000
_MANIFEST = "corpus.json"
# Bump whenever the same arguments would give different files.
_VERSION = 1


def word_phones(word, espeak_phonemes):
    """TIMIT phones of one word from eSpeak's ASCII phonemes.

    Arguments
    ---------
    word : str
        The word (for the error message).
    espeak_phonemes : str
        eSpeak's phonemes of the word (``phonemes(word, ipa=False)``).

    Returns
    -------
    list of str
        TIMIT phones; a stop or affricate comes after its closure.

    Example
    -------
    >>> word_phones("judge", "dZ'VdZ")
    ['dcl', 'jh', 'ah', 'dcl', 'jh']
    """
    text = "".join(c for c in espeak_phonemes if c not in _MARKS)
    longest = max(len(k) for k in ESPEAK_TO_TIMIT)
    phones, i = [], 0
    while i < len(text):
        for size in range(min(longest, len(text) - i), 0, -1):
            symbol = text[i : i + size]
            if symbol in ESPEAK_TO_TIMIT:
                break
        else:
            raise ValueError(
                f"eSpeak phoneme {text[i:]!r} of {word!r} has no TIMIT "
                "phone in ESPEAK_TO_TIMIT"
            )
        for phone in ESPEAK_TO_TIMIT[symbol]:
            if phone in _CLOSURES:
                phones.append(_CLOSURES[phone])
            phones.append(phone)
        i += size
    return phones


def make_timit_corpus(
    out_dir,
    n_train=24,
    n_dev=8,
    n_test=8,
    n_train_speakers=6,
    n_dev_speakers=2,
    n_test_speakers=2,
    min_words=3,
    max_words=5,
    seed=1,
    uppercase=True,
):
    """Speak a small corpus in TIMIT layout with eSpeak NG (cached).

    If ``out_dir`` already holds a corpus made with the same arguments it
    is returned at once; a folder that holds anything else is refused.

    Arguments
    ---------
    out_dir : str
        Folder to write the corpus into.
    n_train, n_dev, n_test : int
        Utterances of the training, development and core test speakers.
    n_train_speakers, n_dev_speakers, n_test_speakers : int
        Speakers per split (at most 24 dev and 24 test speakers).
    min_words, max_words : int
        Inclusive range of the words in a sentence.
    seed : int
        Seed of all random choices.
    uppercase : bool
        Upper-case names (as the LDC disc) or lower case.

    Returns
    -------
    dict
        The manifest saved as ``out_dir/corpus.json``: ``params``,
        ``speakers`` ({id: [split, voice, rate, pitch]}) and
        ``utterances`` per split.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> manifest = make_timit_corpus(tmp, n_train=2, n_dev=1, n_test=1)
    >>> manifest["utterances"]
    {'train': 2, 'dev': 1, 'test': 1}
    >>> sorted(os.listdir(tmp))
    ['TEST', 'TRAIN', 'corpus.json']
    >>> import shutil; shutil.rmtree(tmp)
    """
    params = {
        "n_train": n_train,
        "n_dev": n_dev,
        "n_test": n_test,
        "n_train_speakers": n_train_speakers,
        "n_dev_speakers": n_dev_speakers,
        "n_test_speakers": n_test_speakers,
        "min_words": min_words,
        "max_words": max_words,
        "seed": seed,
        "uppercase": uppercase,
    }
    key = {"version": _VERSION, "params": params, "words": WORDS}
    manifest_path = os.path.join(out_dir, _MANIFEST)
    existing = read_json(manifest_path)
    if up_to_date(existing, key):
        return existing
    if os.path.isdir(out_dir) and os.listdir(out_dir) and existing is None:
        raise FileExistsError(
            f"{out_dir} is not empty and holds no corpus made here; choose "
            "an empty folder"
        )
    if not 1 <= min_words <= max_words:
        raise ValueError("need 1 <= min_words <= max_words")
    from speechbrain_prune.data.espeak import EspeakSynthesizer

    tts = EspeakSynthesizer(sample_rate=_SAMPLE_RATE)
    lexicon = {w: word_phones(w, tts.phonemes(w, ipa=False)) for w in WORDS}
    rng = random.Random(seed)
    speakers = _speakers(params, rng)
    counts = {"train": n_train, "dev": n_dev, "test": n_test}
    manifest = dict(key, speakers={}, utterances=counts)
    sentence = 0
    for split, n_utts in counts.items():
        split_speakers = [s for s in speakers if s["split"] == split]
        for k in range(n_utts):
            spk = split_speakers[k % len(split_speakers)]
            words = rng.choices(WORDS, k=rng.randint(min_words, max_words))
            sentence += 1
            wav = tts.synthesize(
                " ".join(words),
                voice="en-us+" + spk["variant"],
                rate=spk["rate"],
                pitch=spk["pitch"],
            )[0]
            name = ("SX" if k < 5 * len(split_speakers) else "SI") + str(
                sentence
            )
            if not uppercase:
                name = name.lower()
            stem = os.path.join(out_dir, *spk["path"], name)
            _write_utterance(stem, wav, words, lexicon, uppercase)
            manifest["speakers"][spk["id"]] = [
                split,
                spk["variant"],
                spk["rate"],
                spk["pitch"],
            ]
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def _speakers(params, rng):
    """Speaker ids, voices and folders of every split."""
    known = set(DEV_SPEAKERS) | set(CORE_TEST_SPEAKERS)
    pools = {
        "dev": list(DEV_SPEAKERS),
        "test": list(CORE_TEST_SPEAKERS),
        # Invented ids in TIMIT's style (sex, initials, digit).
        "train": [
            f"{'MF'[k % 2]}S{chr(65 + k // 26)}{chr(65 + k % 26)}0"
            for k in range(params["n_train_speakers"])
        ],
    }
    assert not known & set(pools["train"])
    speakers = []
    for split, pool in pools.items():
        n = min(params[f"n_{split}_speakers"], params[f"n_{split}"], 24)
        for k, spk_id in enumerate(pool[:n]):
            sex = spk_id[0]
            variants = _VARIANTS[split][sex]
            top = "TRAIN" if split == "train" else "TEST"
            folders = [top, f"DR{1 + k % 8}", spk_id]
            if not params["uppercase"]:
                folders = [f.lower() for f in folders]
            speakers.append(
                {
                    "id": spk_id,
                    "split": split,
                    "variant": variants[k % len(variants)],
                    "rate": rng.randint(140, 190),
                    "pitch": rng.randint(30, 70),
                    "path": folders,
                }
            )
    return speakers


def _write_utterance(stem, wav, words, lexicon, uppercase):
    """``.WAV``, ``.PHN`` (equal shares of the speech), ``.WRD``, ``.TXT``."""
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    peak = float(np.abs(wav).max()) or 1.0
    wav = (0.5 / peak * wav).astype(np.float32)
    voiced = np.flatnonzero(np.abs(wav) > 0.02)
    start, end = int(voiced[0]), int(voiced[-1]) + 1
    phones = [p for w in words for p in lexicon[w]]
    bounds = np.linspace(start, end, len(phones) + 1).round().astype(int)
    phn = [(0, start, "h#")]
    phn += [(bounds[i], bounds[i + 1], p) for i, p in enumerate(phones)]
    phn.append((end, len(wav), "h#"))
    wrd, i = [], 0
    for w in words:
        n = len(lexicon[w])
        wrd.append((bounds[i], bounds[i + n], w))
        i += n
    wav_ext, phn_ext, wrd_ext, txt_ext = (
        e.upper() if uppercase else e for e in (".wav", ".phn", ".wrd", ".txt")
    )
    sf.write(stem + wav_ext, wav, _SAMPLE_RATE, subtype="PCM_16")
    for suffix, rows in ((phn_ext, phn), (wrd_ext, wrd)):
        with open(stem + suffix, "w") as f:
            f.writelines(f"{a} {b} {label}\n" for a, b, label in rows)
    with open(stem + txt_ext, "w") as f:
        f.write(f"0 {len(wav)} {' '.join(words).capitalize()}.\n")
