"""Data preparation for a corpus in TIMIT layout: csv files for SpeechBrain.

TIMIT (LDC93S1) is laid out as::

    data_folder/{TRAIN,TEST}/DR<n>/<speaker>/<utterance>.{WAV,PHN,WRD,TXT}

in upper case on the LDC disc and in lower case in some copies; both are
read (names are matched without regard to case). ``prepare_timit`` writes
``train.csv``, ``dev.csv`` and ``test.csv`` with the columns ID, duration,
wav, spk_id, phn, wrd, ready for ``DynamicItemDataset.from_csv``. The splits
are the usual ones: all of ``TRAIN`` for training, and from ``TEST`` the
50-speaker development set and the 24-speaker core test set (Halberstadt,
1998); the dialect sentences SA1/SA2 are left out everywhere. Phones are
folded from TIMIT's 61 symbols to the 39 classes of Lee and Hon (1989).

Authors
 * speechbrain-prune team 2026
"""

import csv
import json
import logging
import os

import soundfile as sf

from speechbrain_prune.data.manifest import read_json

__all__ = [
    "CORE_TEST_SPEAKERS",
    "DEV_SPEAKERS",
    "FOLD_61_TO_39",
    "PHONES_39",
    "TIMIT_PHONES",
    "fold_phones",
    "phone_set",
    "prepare_timit",
]

logger = logging.getLogger(__name__)

#: TIMIT's 61 phone symbols (``h#``: start/end silence, ``pau``: pause).
TIMIT_PHONES = tuple(
    "aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi "
    "er ey f g gcl h# hh hv ih ix iy jh k kcl l m n ng nx ow oy p pau pcl q "
    "r s sh t tcl th uh uw ux v w y z zh".split()
)

_SILENCES = ("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "h#", "pau", "epi")
_MERGED = {
    "ao": "aa",
    "ax": "ah",
    "ax-h": "ah",
    "axr": "er",
    "hv": "hh",
    "ix": "ih",
    "el": "l",
    "em": "m",
    "en": "n",
    "nx": "n",
    "eng": "ng",
    "zh": "sh",
    "ux": "uw",
}

#: 61 -> 39 folding of Lee and Hon (1989): closures and pauses become
#: ``sil``; the glottal stop ``q`` is dropped (``None``).
FOLD_61_TO_39 = {
    p: ("sil" if p in _SILENCES else None if p == "q" else _MERGED.get(p, p))
    for p in TIMIT_PHONES
}

#: The 39 phone classes, sorted.
PHONES_39 = tuple(sorted({p for p in FOLD_61_TO_39.values() if p}))

#: The 50 speakers of the usual development set (all under TEST/).
DEV_SPEAKERS = tuple(
    "FAKS0 FDAC1 FJEM0 MGWT0 MJAR0 MMDB1 MMDM2 MPDF0 FCMH0 FKMS0 MBDG0 MBWM0 "
    "MCSH0 FADG0 FDMS0 FEDW0 MGJF0 MGLB0 MRTK0 MTAA0 MTDT0 MTHC0 MWJG0 FNMR0 "
    "FREW0 FSEM0 MBNS0 MMJR0 MDLS0 MDLF0 MDVC0 MERS0 FMAH0 FDRW0 MRCS0 MRJM4 "
    "FCAL1 MMWH0 FJSJ0 MAJC0 MJSW0 MREB0 FGJD0 FJMG0 MROA0 MTEB0 MJFC0 MRJR0 "
    "FMML0 MRWS1".split()
)

#: The 24 speakers of the core test set: two men and one woman from each of
#: the eight dialect regions.
CORE_TEST_SPEAKERS = tuple(
    "MDAB0 MWBT0 FELC0 MTAS1 MWEW0 FPAS0 MJMP0 MLNT0 FPKT0 MLLL0 MTLS0 FJLM0 "
    "MBPM0 MKLT0 FNLP0 MCMJ0 MJDH0 FMGD0 MGRT0 MNJM0 FDHC0 MJLN0 MPAM0 "
    "FMLD0".split()
)

#: csv file of each split, and the columns of every csv file.
SPLIT_FILES = {"train": "train.csv", "dev": "dev.csv", "test": "test.csv"}
COLUMNS = ["ID", "duration", "wav", "spk_id", "phn", "wrd"]
_OPTIONS_FILE = "timit_prepare.json"


def phone_set(phn_set=39):
    """The phone labels of ``phn_set`` (39 or 61), as a tuple.

    Arguments
    ---------
    phn_set : int
        39 for the folded classes, 61 for TIMIT's own symbols.

    Returns
    -------
    tuple of str

    Example
    -------
    >>> len(phone_set(39)), len(phone_set(61))
    (39, 61)
    >>> phone_set(39)[-3:]
    ('w', 'y', 'z')
    """
    if phn_set == 39:
        return PHONES_39
    if phn_set == 61:
        return TIMIT_PHONES
    raise ValueError(f"phn_set must be 39 or 61, got {phn_set!r}")


def fold_phones(phones, phn_set=39):
    """TIMIT phone labels as a recipe's targets.

    With ``phn_set=39`` every phone is folded (``FOLD_61_TO_39``), ``q`` is
    dropped and runs of ``sil`` (a closure after a pause, ...) become one.
    With ``phn_set=61`` the labels are returned unchanged.

    Arguments
    ---------
    phones : sequence of str
        TIMIT's 61 symbols, in the order of a ``.PHN`` file.
    phn_set : int
        39 or 61.

    Returns
    -------
    list of str

    Example
    -------
    >>> fold_phones(["h#", "q", "ix", "pau", "tcl", "t", "ux", "h#"])
    ['sil', 'ih', 'sil', 't', 'uw', 'sil']
    """
    phone_set(phn_set)
    unknown = sorted(set(phones) - set(TIMIT_PHONES))
    if unknown:
        raise ValueError(f"Not TIMIT phone symbols: {unknown}")
    if phn_set == 61:
        return list(phones)
    out = []
    for phone in phones:
        folded = FOLD_61_TO_39[phone]
        if folded is None or (folded == "sil" and out and out[-1] == "sil"):
            continue
        out.append(folded)
    return out


def prepare_timit(data_folder, save_folder, phn_set=39, skip_prep=False):
    """Write train/dev/test csv files for a corpus in TIMIT layout.

    The files are kept when they exist and were made from the same
    ``data_folder`` and ``phn_set`` (recorded in ``timit_prepare.json``);
    otherwise they are written anew. Rows are sorted by ID
    (``<speaker>_<utterance>``), wav paths are absolute, ``phn`` holds the
    phone labels (``fold_phones``) and ``wrd`` the words of the ``.WRD``
    file, separated by spaces.

    Arguments
    ---------
    data_folder : str
        Corpus root, holding ``TRAIN`` and ``TEST`` (any case).
    save_folder : str
        Folder for the csv files (created if needed).
    phn_set : int
        39 (folded) or 61 phone labels.
    skip_prep : bool
        Do nothing (the csv files are already there).

    Returns
    -------
    dict
        Path of the csv file of each split (``train``, ``dev``, ``test``).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_prune.data.timit_corpus import make_timit_corpus
    >>> tmp = tempfile.mkdtemp()
    >>> _ = make_timit_corpus(tmp, n_train=2, n_dev=1, n_test=1)
    >>> files = prepare_timit(tmp, os.path.join(tmp, "csv"))
    >>> with open(files["test"]) as f:
    ...     print(f.readline().strip())
    ID,duration,wav,spk_id,phn,wrd
    >>> import shutil; shutil.rmtree(tmp)
    """
    files = {s: os.path.join(save_folder, f) for s, f in SPLIT_FILES.items()}
    if skip_prep:
        return files
    options = {"data_folder": os.path.abspath(data_folder), "phn_set": phn_set}
    options_path = os.path.join(save_folder, _OPTIONS_FILE)
    if all(os.path.isfile(f) for f in files.values()):
        if read_json(options_path) == options:
            logger.info("TIMIT csv files in %s are up to date", save_folder)
            return files
    phone_set(phn_set)
    splits = _split_wavs(data_folder)
    os.makedirs(save_folder, exist_ok=True)
    for split, wavs in splits.items():
        rows = sorted(_row(wav, phn_set) for wav in wavs)
        # Written under another name first: an interrupted run leaves no
        # partial file that the next run would keep.
        partial = files[split] + ".partial"
        with open(partial, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        os.replace(partial, files[split])
        logger.info("Wrote %s (%d utterances)", files[split], len(rows))
    with open(options_path, "w") as f:
        json.dump(options, f)
    return files


def _split_wavs(data_folder):
    """{split: wav paths}: TRAIN, and the dev/test speakers of TEST."""
    tops = _children(data_folder)
    missing = [name for name in ("TRAIN", "TEST") if name not in tops]
    if missing:
        raise FileNotFoundError(
            f"{data_folder} is not in TIMIT layout: no folder {missing} "
            "(upper or lower case); set `data_folder` to the corpus root"
        )
    splits = {"train": [], "dev": [], "test": []}
    speakers = {"dev": set(DEV_SPEAKERS), "test": set(CORE_TEST_SPEAKERS)}
    for top, split_names in (("TRAIN", ("train",)), ("TEST", ("dev", "test"))):
        for region in _children(tops[top]).values():
            for speaker, folder in _children(region).items():
                for split in split_names:
                    if split == "train" or speaker in speakers[split]:
                        splits[split] += _utterance_wavs(folder)
    empty = [split for split, wavs in splits.items() if not wavs]
    if empty:
        raise FileNotFoundError(
            f"No utterance of split(s) {empty} under {data_folder} (dev and "
            "test need the standard speakers under TEST/)"
        )
    return splits


def _children(folder):
    """{upper-case name: path} of the sub-folders of ``folder``."""
    if not os.path.isdir(folder):
        return {}
    return {
        name.upper(): os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if os.path.isdir(os.path.join(folder, name))
    }


def _utterance_wavs(folder):
    """The wav files of a speaker folder, without the SA sentences."""
    return [
        os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if name.upper().endswith(".WAV") and not name.upper().startswith("SA")
    ]


def _sibling(wav, extension):
    """The ``.PHN``/``.WRD`` file beside ``wav``, in the same case."""
    stem = wav[: -len(".wav")]
    for ext in (extension.upper(), extension.lower()):
        if os.path.isfile(stem + ext):
            return stem + ext
    raise FileNotFoundError(f"No {extension} file beside {wav}")


def _labels(path):
    """The third field of every line of a TIMIT label file."""
    with open(path) as f:
        return [line.split()[2] for line in f if line.strip()]


def _row(wav, phn_set):
    speaker = os.path.basename(os.path.dirname(wav)).upper()
    utterance = os.path.basename(wav)[: -len(".wav")].upper()
    info = sf.info(wav)
    phones = fold_phones(_labels(_sibling(wav, ".PHN")), phn_set)
    words = _labels(_sibling(wav, ".WRD"))
    return [
        f"{speaker}_{utterance}",
        f"{info.frames / info.samplerate:.4f}",
        os.path.abspath(wav),
        speaker,
        " ".join(phones),
        " ".join(words),
    ]
