"""Tests of the TIMIT-layout data preparation and the tiny eSpeak corpus."""

import csv
import os

import pytest
import soundfile as sf

from speechbrain_prune.data.espeak import EspeakSynthesizer
from speechbrain_prune.data.timit import (
    CORE_TEST_SPEAKERS,
    DEV_SPEAKERS,
    FOLD_61_TO_39,
    PHONES_39,
    TIMIT_PHONES,
    fold_phones,
    prepare_timit,
)
from speechbrain_prune.data.timit_corpus import (
    WORDS,
    make_timit_corpus,
    word_phones,
)

TINY = dict(
    n_train=6,
    n_dev=2,
    n_test=3,
    n_train_speakers=3,
    n_dev_speakers=2,
    n_test_speakers=1,
)


@pytest.fixture(scope="module", params=[True, False], ids=["upper", "lower"])
def corpus(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("timit")
    make_timit_corpus(str(out), uppercase=request.param, **TINY)
    return out, request.param


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_phone_sets():
    assert len(TIMIT_PHONES) == len(set(TIMIT_PHONES)) == 61
    assert len(PHONES_39) == 39 and "sil" in PHONES_39
    assert FOLD_61_TO_39["q"] is None
    # Each of the 39 classes is reached, and only from TIMIT symbols.
    assert {p for p in FOLD_61_TO_39.values() if p} == set(PHONES_39)
    merged = {"ao": "aa", "ax-h": "ah", "axr": "er", "el": "l", "nx": "n"}
    for phone, folded in merged.items():
        assert FOLD_61_TO_39[phone] == folded
    for closure in ("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "epi"):
        assert FOLD_61_TO_39[closure] == "sil"


def test_fold_phones_merges_silences_and_drops_q():
    phones = ["h#", "hv", "eh", "q", "l", "ow", "pau", "epi", "bcl", "b"]
    phones += ["ix", "tcl", "h#"]
    assert fold_phones(phones) == [
        "sil", "hh", "eh", "l", "ow", "sil", "b", "ih", "sil",
    ]  # fmt: skip
    assert fold_phones(phones, phn_set=61) == phones
    with pytest.raises(ValueError, match="Not TIMIT phone symbols"):
        fold_phones(["sil", "xx"])
    with pytest.raises(ValueError, match="phn_set"):
        fold_phones(["aa"], phn_set=48)


def test_speaker_lists():
    assert len(set(DEV_SPEAKERS)) == 50
    assert len(set(CORE_TEST_SPEAKERS)) == 24
    assert not set(DEV_SPEAKERS) & set(CORE_TEST_SPEAKERS)
    # The core test set: two men and one woman from each dialect region.
    sexes = [spk[0] for spk in CORE_TEST_SPEAKERS]
    assert sexes.count("M") == 16 and sexes.count("F") == 8


def test_espeak_words_map_to_timit_phones():
    tts = EspeakSynthesizer()
    for word in WORDS:
        phones = word_phones(word, tts.phonemes(word, ipa=False))
        assert phones and set(phones) <= set(TIMIT_PHONES), word
    assert word_phones("cat", "k'at") == ["kcl", "k", "ae", "tcl", "t"]
    with pytest.raises(ValueError, match="no TIMIT phone"):
        word_phones("x", "k'Q")


def test_corpus_layout(corpus):
    root, uppercase = corpus
    case = str.upper if uppercase else str.lower
    wavs = sorted(root.rglob("*" + case(".wav")))
    assert len(wavs) == 6 + 2 + 3
    for wav in wavs:
        parts = wav.relative_to(root).parts
        assert parts[0] in (case("TRAIN"), case("TEST"))
        assert parts[1].upper().startswith("DR")
        info = sf.info(str(wav))
        assert info.samplerate == 16000 and info.channels == 1
        stem = str(wav)[: -len(".wav")]
        phn = [line.split() for line in open(stem + case(".phn"))]
        # Contiguous segments over the whole file, silence at both ends.
        assert int(phn[0][0]) == 0 and int(phn[-1][1]) == info.frames
        assert all(a[1] == b[0] for a, b in zip(phn, phn[1:]))
        assert phn[0][2] == phn[-1][2] == "h#"
        words = [line.split()[2] for line in open(stem + case(".wrd"))]
        text = open(stem + case(".txt")).read().split(maxsplit=2)[2]
        assert " ".join(words) == text.strip().rstrip(".").lower()


def test_prepare_splits_and_labels(corpus, tmp_path):
    root, _ = corpus
    files = prepare_timit(str(root), str(tmp_path))
    rows = {split: read_csv(path) for split, path in files.items()}
    assert {s: len(r) for s, r in rows.items()} == {
        "train": 6,
        "dev": 2,
        "test": 3,
    }
    assert {r["spk_id"] for r in rows["dev"]} <= set(DEV_SPEAKERS)
    assert {r["spk_id"] for r in rows["test"]} <= set(CORE_TEST_SPEAKERS)
    assert not {r["spk_id"] for r in rows["train"]} & (
        set(DEV_SPEAKERS) | set(CORE_TEST_SPEAKERS)
    )
    for row in rows["train"] + rows["dev"] + rows["test"]:
        phones = row["phn"].split()
        assert set(phones) <= set(PHONES_39)
        assert phones[0] == phones[-1] == "sil"
        assert all(a != b or a != "sil" for a, b in zip(phones, phones[1:]))
        assert os.path.isabs(row["wav"]) and os.path.isfile(row["wav"])
        info = sf.info(row["wav"])
        assert float(row["duration"]) == pytest.approx(
            info.frames / 16000, abs=1e-3
        )
        utterance = os.path.basename(row["wav"]).split(".")[0].upper()
        assert row["ID"] == f"{row['spk_id']}_{utterance}"


def test_prepare_keeps_or_redoes_files(corpus, tmp_path):
    root, _ = corpus
    files = prepare_timit(str(root), str(tmp_path))
    before = os.stat(files["train"]).st_mtime_ns
    prepare_timit(str(root), str(tmp_path))
    assert os.stat(files["train"]).st_mtime_ns == before
    prepare_timit(str(root), str(tmp_path), phn_set=61)
    phones = {p for r in read_csv(files["train"]) for p in r["phn"].split()}
    assert "h#" in phones and "sil" not in phones


def test_prepare_refuses_other_layouts(tmp_path):
    (tmp_path / "train-clean-100").mkdir()
    with pytest.raises(FileNotFoundError, match="not in TIMIT layout"):
        prepare_timit(str(tmp_path), str(tmp_path / "csv"))


def test_prepare_timit_synth(tmp_path):
    """The shared TIMIT-layout corpus: the stock split sizes."""
    from conftest import shared_data

    data = shared_data("timit-synth")
    files = prepare_timit(data, str(tmp_path))
    rows = {split: read_csv(path) for split, path in files.items()}
    assert {s: len(r) for s, r in rows.items()} == {
        "train": 700,
        "dev": 100,
        "test": 192,
    }
    assert {r["spk_id"] for r in rows["dev"]} == set(DEV_SPEAKERS)
    assert {r["spk_id"] for r in rows["test"]} == set(CORE_TEST_SPEAKERS)
    # After folding, all 39 classes occur in every split (its README).
    for split_rows in rows.values():
        seen = {p for r in split_rows for p in r["phn"].split()}
        assert seen == set(PHONES_39)
