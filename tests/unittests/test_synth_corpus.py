"""Tests of the eSpeak synthesiser and the synthetic digits corpus."""

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_prune.data import (
    SPLITS,
    VOCABULARY,
    EspeakSynthesizer,
    make_digits_corpus,
    prepare_csv,
    synth_corpus,
)

TINY = dict(
    n_train=6,
    n_dev=2,
    n_test=2,
    n_train_speakers=3,
    n_dev_speakers=1,
    n_test_speakers=1,
    progress=False,
)
# Real recorded digits in the same layout, in ../shared/data beside the
# project root.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
REAL_CORPUS = PROJECT_ROOT.parent / "shared" / "data" / "digits-librispeech"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    return out, make_digits_corpus(str(out), **TINY)


def read_transcripts(root):
    """{split: {utt_id: (flac path, words)}} from the trans.txt files."""
    result = {}
    for split in SPLITS:
        result[split] = {}
        for trans in sorted((root / split).glob("*/*/*.trans.txt")):
            for line in trans.read_text().splitlines():
                utt_id, words = line.split(" ", 1)
                flac = trans.parent / f"{utt_id}.flac"
                result[split][utt_id] = (flac, words)
    return result


def words_only(transcripts):
    return {
        split: {utt: words for utt, (_, words) in utts.items()}
        for split, utts in transcripts.items()
    }


def file_times(root):
    return {
        str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
    }


def test_layout(corpus):
    root, manifest = corpus
    transcripts = read_transcripts(root)
    expected = {"train-clean-100": 6, "dev-clean": 2, "test-clean": 2}
    assert manifest["utterances"] == expected
    for split in SPLITS:
        flacs = sorted((root / split).rglob("*.flac"))
        assert len(flacs) == expected[split]
        assert {f.stem for f in flacs} == set(transcripts[split])
        for flac in flacs:
            spk, chapter, utt = flac.stem.split("-")
            assert flac.parent == root / split / spk / chapter
            assert len(utt) == 4 and utt.isdigit()
    assert (root / "corpus.json").is_file()
    assert (root / "SPEAKERS.TXT").is_file()
    assert not (root / ".incomplete").exists()


def test_audio(corpus):
    root, _ = corpus
    for utts in read_transcripts(root).values():
        for flac, words in utts.values():
            info = sf.info(str(flac))
            assert (info.samplerate, info.channels) == (16000, 1)
            assert info.subtype == "PCM_16"
            wav, _ = sf.read(str(flac), dtype="float32")
            duration = len(wav) / 16000
            # 2-5 words at 120-210 words a minute plus 0.1-0.6 s margins.
            assert 0.4 < duration < 6.0, (flac, duration)
            assert 0.01 < np.sqrt(np.mean(wav**2)) < 0.5
            assert np.abs(wav).max() < 0.99


def test_transcripts_use_vocabulary(corpus):
    root, _ = corpus
    for utts in read_transcripts(root).values():
        for _, words in utts.values():
            assert 2 <= len(words.split()) <= 5
            assert set(words.split()) <= set(VOCABULARY)


def test_speakers_disjoint(corpus):
    root, manifest = corpus
    speakers = {
        split: {p.name for p in (root / split).iterdir()} for split in SPLITS
    }
    train, dev, test = (speakers[s] for s in SPLITS)
    assert len(train) == 3 and len(dev) == 1 and len(test) == 1
    assert not (train & dev or train & test or dev & test)
    variants = {split: set() for split in SPLITS}
    for spk in manifest["speakers"]:
        variants[spk["split"]].add(spk["voice"].split("+")[1])
    assert not variants["train-clean-100"] & variants["test-clean"]
    assert not variants["train-clean-100"] & variants["dev-clean"]


def test_deterministic(corpus, tmp_path):
    root, manifest = corpus
    again = make_digits_corpus(str(tmp_path / "again"), **TINY)
    assert words_only(read_transcripts(tmp_path / "again")) == words_only(
        read_transcripts(root)
    )
    # eSpeak's voice variants add random jitter, so the audio (and the
    # minutes it lasts) may differ by a few milliseconds between runs; the
    # words and the speakers' voices are drawn from the seed.
    assert without_minutes(again) == without_minutes(manifest)
    minutes = [spk["minutes"] for spk in manifest["speakers"]]
    again_minutes = [spk["minutes"] for spk in again["speakers"]]
    assert again_minutes == pytest.approx(minutes, abs=0.005)
    other = make_digits_corpus(str(tmp_path / "other"), seed=2, **TINY)
    assert without_minutes(other) != without_minutes(manifest)


def without_minutes(manifest):
    """The speakers of a manifest without the length of their audio."""
    return [
        {key: value for key, value in spk.items() if key != "minutes"}
        for spk in manifest["speakers"]
    ]


def test_cache_hit(corpus, monkeypatch):
    root, manifest = corpus
    before = file_times(root)

    def no_synthesis():
        raise AssertionError("a cache hit must not synthesise")

    monkeypatch.setattr(synth_corpus, "_synthesizer", no_synthesis)
    assert make_digits_corpus(str(root), **TINY) == manifest
    assert file_times(root) == before


def test_other_parameters_regenerate(corpus, tmp_path):
    root, _ = corpus
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    manifest = make_digits_corpus(str(copy), **dict(TINY, n_test=3))
    assert manifest["utterances"]["test-clean"] == 3
    assert len(list((copy / "test-clean").rglob("*.flac"))) == 3


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not a corpus")
    with pytest.raises(FileExistsError):
        make_digits_corpus(str(tmp_path), **TINY)


def check_csv_files(root, csv_files):
    transcripts = read_transcripts(root)
    for split in SPLITS:
        with open(csv_files[split], newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["ID", "duration", "wav", "spk_id", "wrd"]
        assert [r["ID"] for r in rows] == sorted(transcripts[split])
        for row in rows:
            flac, words = transcripts[split][row["ID"]]
            assert os.path.samefile(row["wav"], flac)
            assert row["spk_id"] == "-".join(row["ID"].split("-")[:2])
            assert row["wrd"] == words
            info = sf.info(str(flac))
            expected = info.frames / info.samplerate
            assert float(row["duration"]) == pytest.approx(expected)


def test_prepare_csv(corpus, tmp_path):
    root, _ = corpus
    csv_files = prepare_csv(str(root), str(tmp_path))
    assert csv_files == {s: str(tmp_path / f"{s}.csv") for s in SPLITS}
    check_csv_files(root, csv_files)
    before = file_times(tmp_path)
    assert prepare_csv(str(root), str(tmp_path)) == csv_files
    assert file_times(tmp_path) == before


@pytest.mark.skipif(
    not REAL_CORPUS.is_dir(), reason=f"{REAL_CORPUS} (real digits) is absent"
)
def test_prepare_csv_real_corpus(tmp_path):
    csv_files = prepare_csv(str(REAL_CORPUS), str(tmp_path))
    check_csv_files(REAL_CORPUS, csv_files)


def test_synthesizer():
    tts = EspeakSynthesizer()
    wav, sr = tts.synthesize("one two", voice="en+f2", rate=200, pitch=60)
    assert sr == 16000 and wav.dtype == np.float32 and wav.ndim == 1
    assert 0.3 < len(wav) / sr < 2.0 and np.abs(wav).max() > 0.1
    native, native_sr = EspeakSynthesizer(sample_rate=None).synthesize("one")
    assert native_sr == tts.native_sample_rate == 22050
    slow, _ = tts.synthesize("one two", voice="en+f2", rate=100, pitch=60)
    assert len(slow) > 1.5 * len(wav)
    assert {"m1", "f2"} <= set(tts.list_variants())
    with pytest.raises(ValueError, match="no voice"):
        tts.synthesize("one", voice="no-such-voice")
    with pytest.raises(ValueError, match="variant"):
        tts.synthesize("one", voice="en-us+no-such-variant")
    with pytest.raises(ValueError, match="rate"):
        tts.synthesize("one", rate=20)
    assert tts.phonemes("zero one", ipa=False).startswith("z'i@r")
    american, british = (tts.phonemes("oh", voice=v) for v in ("en-us", "en"))
    assert american == "ˈoʊ" and british == "ˈəʊ"
