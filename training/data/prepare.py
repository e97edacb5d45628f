"""Build the training index: read sources, map to classes, de-duplicate, split; and its CLI.

Steps, in order: read every source -> keep rows whose diagnosis is in a class -> drop images
shipped by several sources and ISIC 2020's listed duplicates -> optionally drop rows whose
age, sex or site would encode as unknown -> held-out sources to ``external`` -> grouped,
stratified test and validation splits, the rest ``train``. The index CSV
has the columns of ``INDEX_COLUMNS``; the report says what every step removed and why.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from screening.metadata import DEFAULT_VOCABULARY, MetadataVocabulary

from .classes import BUILTIN_CLASS_CONFIGS, ClassConfig, get_class_config
from .dedup import DedupReport, drop_cross_source_duplicates, drop_listed_duplicates
from .errors import DataError
from .sources import FORMATS, Source, is_missing, parse_source_spec, read_duplicate_pairs, read_source
from .split import group_keys, grouped_stratified_split

INDEX_COLUMNS = ["image_id", "image_path", "mask_path", "diagnosis", "label", "age", "sex", "site",
                 "lesion_id", "patient_id", "source", "split"]
META_FIELDS = ("age", "sex", "site")


@dataclass
class SourceStats:
    """Rows read from one input table and those left out for having no class."""

    name: str  # folder, file and format, e.g. "isic_metadata/HAM10000_metadata.csv (ham10000)"
    rows: int
    unclassified: Counter  # diagnosis code -> rows whose diagnosis is in no class


@dataclass
class PrepareReport:
    """What ``build_index`` did, for humans and for tests."""

    class_config: str
    sources: list[SourceStats] = field(default_factory=list)
    dedup: DedupReport = field(default_factory=DedupReport)
    listed_duplicates: int = 0  # second images of ISIC 2020 duplicate pairs
    missing_metadata: Counter = field(default_factory=Counter)  # field -> rows dropped for it
    dropped_missing: int = 0  # rows dropped for missing metadata (a row may miss several fields)
    unknown_sites: Counter = field(default_factory=Counter)  # raw site string -> rows
    class_counts: pd.DataFrame = field(default_factory=pd.DataFrame)  # class x split
    groups: dict[str, int] = field(default_factory=dict)  # split -> groups
    groups_on_both_sides: int = 0

    def lines(self) -> list[str]:
        """The report as printed by the CLI."""
        out = ["Sources:"]
        for s in self.sources:
            line = f"  {s.name}: {s.rows} rows"
            if s.unclassified:
                left = ", ".join(f"{d} {n}" for d, n in s.unclassified.most_common())
                line += (f", {sum(s.unclassified.values())} left out "
                         f"(diagnosis in no class of {self.class_config}: {left})")
            out.append(line)
        out.append(f"Duplicates removed: {self.dedup.total + self.listed_duplicates}")
        for (dropped, kept), n in sorted(self.dedup.removed.items()):
            out.append(f"  {dropped} rows whose image is kept from {kept}: {n}")
        if self.listed_duplicates:
            out.append(f"  ISIC 2020 images listed as duplicates: {self.listed_duplicates}")
        if self.dedup.diagnosis_conflicts:
            out.append(f"  dropped copies with another diagnosis than the kept row: "
                       f"{self.dedup.diagnosis_conflicts} (another class: {self.dedup.label_conflicts})")
        if self.unknown_sites:
            sites = ", ".join(f"{s!r} {n}" for s, n in self.unknown_sites.most_common())
            out.append(f"Site strings the metadata vocabulary maps to unknown: {sites}")
        if self.dropped_missing:
            fields = ", ".join(f"{f} {self.missing_metadata[f]}" for f in META_FIELDS)
            out.append(f"Dropped for missing metadata: {self.dropped_missing} rows ({fields})")
        splits = list(self.class_counts.columns)
        out.append(f"Classes ({' / '.join(splits)}):")
        for name, row in self.class_counts.iterrows():
            out.append(f"  {name:<8} " + " / ".join(f"{row[s]:>6}" for s in splits))
        counts = ", ".join(f"{s} {self.groups.get(s, 0)}" for s in splits)
        out.append(f"Groups (lesion, else patient, else image): {counts}, "
                   f"on both sides {self.groups_on_both_sides}")
        return out


@dataclass
class PreparedIndex:
    """The index and the report of how it was built."""

    index: pd.DataFrame
    report: PrepareReport


def _as_sources(sources: Sequence[Source | str | Path], images_dir: Path | None) -> list[Source]:
    out: list[Source] = []
    for src in sources:
        out.extend([src.resolved()] if isinstance(src, Source) else parse_source_spec(str(src), images_dir))
    return out


def _read_and_classify(sources: list[Source], config: ClassConfig,
                       report: PrepareReport) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    frames, pairs = [], []
    for src in sources:
        frame = read_source(src)
        frame["label"] = frame["diagnosis"].map(config.class_of)
        unclassified = frame["label"].isna()
        name = f"{src.path.parent.name}/{src.path.name} ({src.format})"
        report.sources.append(SourceStats(name, len(frame),
                                          Counter(frame.loc[unclassified, "diagnosis"])))
        frames.append(frame[~unclassified])
        pairs.extend(read_duplicate_pairs(src))
    return pd.concat(frames, ignore_index=True), pairs


def _missing_fields(frame: pd.DataFrame, vocabulary: MetadataVocabulary) -> pd.DataFrame:
    """Per row and field, True when the value would encode as unknown."""
    unknown = vocabulary.unknown_codes()
    return pd.DataFrame({
        "age": frame["age"].map(lambda v: vocabulary.age_code(v)[0] == unknown.age),
        "sex": frame["sex"].map(lambda v: vocabulary.sex_code(v)[0] == unknown.sex),
        "site": frame["site"].map(lambda v: vocabulary.site_code(v)[0] == unknown.site),
    })


def _unknown_sites(frame: pd.DataFrame, vocabulary: MetadataVocabulary) -> Counter:
    sites = frame["site"][~frame["site"].map(is_missing)]
    return Counter(s for s in sites if vocabulary.site_group(s) == "unknown")


def build_index(sources: Sequence[Source | str | Path], class_config: ClassConfig | str | list | dict, *,
                images_dir: Path | None = None, drop_missing_metadata: bool = False,
                val_fraction: float = 0.3, seed: int = 0, test_fraction: float = 0.0,
                holdout_sources: Sequence[str] = (),
                vocabulary: MetadataVocabulary = DEFAULT_VOCABULARY) -> PreparedIndex:
    """Build the split index from source tables.

    Args:
        sources: ``Source`` objects, or specs ``PATH[+COMPANION][:FORMAT]`` / folders of tables.
        class_config: a ClassConfig, a built-in name, a YAML path or inline class data.
        images_dir: images folder for table-only sources given as specs.
        drop_missing_metadata: drop rows whose age, sex or site would encode as unknown.
        val_fraction: share of every class (and so of all rows) put in validation.
        seed: the split is a pure function of the inputs and this seed.
        test_fraction: share of every class put in a test split, touched once for the report
            (validation picks epochs, temperature and operating points, so it flatters).
        holdout_sources: sources kept out of training whole (split ``external``): the
            leave-one-source-out measure of how the model does on a camera it never saw.
        vocabulary: decides which metadata values count as usable.

    Raises:
        DataError: for unreadable sources or when no row is left.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"validation fraction must lie in [0, 1), got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise DataError(f"test fraction must lie in [0, 1) and leave rows for training, got {test_fraction} "
                        f"with validation {val_fraction}")
    if not sources:
        raise DataError("no source tables given")
    config = get_class_config(class_config)
    report = PrepareReport(class_config=config.name)
    frame, pairs = _read_and_classify(_as_sources(sources, images_dir), config, report)
    frame, report.dedup = drop_cross_source_duplicates(frame)
    frame, report.listed_duplicates = drop_listed_duplicates(frame, pairs)
    report.unknown_sites = _unknown_sites(frame, vocabulary)
    if drop_missing_metadata:
        missing = _missing_fields(frame, vocabulary)
        report.missing_metadata = Counter({f: int(missing[f].sum()) for f in META_FIELDS})
        report.dropped_missing = int(missing.any(axis=1).sum())
        frame = frame[~missing.any(axis=1)].reset_index(drop=True)
    if frame.empty:
        read = sum(s.rows for s in report.sources)
        unclassified = sum(sum(s.unclassified.values()) for s in report.sources)
        raise DataError(f"no rows left to index: of {read} rows read, {unclassified} have a diagnosis "
                        f"in no class of {config.name}, {report.dedup.total + report.listed_duplicates} "
                        f"were duplicates and {report.dropped_missing} missed metadata")
    groups = group_keys(frame)
    frame["split"] = assign_splits(frame, groups, val_fraction, test_fraction, holdout_sources, seed)
    splits = [s for s in SPLITS if (frame["split"] == s).any() or s in ("train", "val")]
    report.class_counts = (pd.crosstab(frame["label"], frame["split"])
                           .reindex(index=config.class_names, columns=splits, fill_value=0))
    report.groups = {s: int(groups[frame["split"] == s].nunique()) for s in splits}
    sides = frame.groupby(groups.values)["split"].nunique()
    report.groups_on_both_sides = int((sides > 1).sum())
    return PreparedIndex(frame[INDEX_COLUMNS], report)


SPLITS = ("train", "val", "test", "external")


def assign_splits(frame: pd.DataFrame, groups: pd.Series, val_fraction: float, test_fraction: float,
                  holdout_sources: Sequence[str], seed: int) -> list[str]:
    """Per row ``train``, ``val``, ``test`` or ``external``; a group never spans two splits.

    A group with any row in a held-out source goes wholly to ``external``, so a lesion photographed
    for two sources cannot leak its held-out image into training. Test is drawn first, then
    validation from the rest, each a grouped, class-stratified share of all non-external rows.
    """
    unknown = sorted(set(holdout_sources) - set(frame["source"]))
    if unknown:
        raise DataError(f"held-out source(s) {', '.join(unknown)} not among the sources read: "
                        f"{', '.join(sorted(set(frame['source'])))}")
    held_groups = set(groups[frame["source"].isin(list(holdout_sources))])
    external = groups.isin(held_groups).to_numpy()
    split = np.where(external, "external", "train").astype(object)
    inside = np.flatnonzero(~external)
    labels, keys = frame["label"].iloc[inside], groups.iloc[inside]
    if test_fraction > 0:
        is_test = grouped_stratified_split(labels, keys, test_fraction, seed)
        split[inside[is_test]] = "test"
        inside, labels, keys = inside[~is_test], labels[~is_test], keys[~is_test]
    # Validation's share is of all non-external rows, so rescale it to what test left over.
    is_val = grouped_stratified_split(labels, keys, val_fraction / (1.0 - test_fraction), seed + 1
                                      if test_fraction > 0 else seed)
    split[inside[is_val]] = "val"
    return list(split)


def prepare_index(sources: Sequence[Source | str | Path], class_config: ClassConfig | str | list | dict, *,
                  images_dir: Path | None = None, drop_missing_metadata: bool = False,
                  val_fraction: float = 0.3, seed: int = 0, test_fraction: float = 0.0,
                  holdout_sources: Sequence[str] = (),
                  vocabulary: MetadataVocabulary = DEFAULT_VOCABULARY) -> pd.DataFrame:
    """The index frame of ``build_index`` (columns ``INDEX_COLUMNS``), without the report."""
    return build_index(sources, class_config, images_dir=images_dir,
                       drop_missing_metadata=drop_missing_metadata, val_fraction=val_fraction,
                       seed=seed, test_fraction=test_fraction, holdout_sources=holdout_sources,
                       vocabulary=vocabulary).index


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training prepare",
        description="Merge dataset tables into one de-duplicated, grouped and stratified "
                    "train/val index CSV.")
    parser.add_argument("--source", action="append", required=True, metavar="PATH[+COMPANION][:FORMAT]",
                        help="a source table, or a folder of tables (repeatable). FORMAT is one of "
                             f"{', '.join(FORMATS)} (detected from the columns when left out). "
                             "COMPANION is the ISIC 2017/2019 metadata table or the ISIC 2020 "
                             "duplicates list; found next to the ground truth by its official "
                             "name when left out.")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="folder of <image>.jpg for the table-only sources (not labels CSVs)")
    parser.add_argument("--classes", default="ham7",
                        help=f"class configuration: {', '.join(BUILTIN_CLASS_CONFIGS)} or a .yaml file "
                             "(default: ham7)")
    parser.add_argument("--drop-missing-metadata", action="store_true",
                        help="drop rows whose age, sex or site is missing or unusable")
    parser.add_argument("--val-fraction", type=float, default=0.3,
                        help="validation share of every class (default: 0.3)")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="test share of every class, kept for the final report (default: 0)")
    parser.add_argument("--holdout-source", action="append", default=[], metavar="SOURCE",
                        help="keep this source (a labels CSV's folder name, or a format such as "
                             "isic2019) out of training as split 'external' (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("index.csv"),
                        help="index CSV to write (default: index.csv)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m training prepare``: build the index, print the report; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        prepared = build_index(args.source, args.classes, images_dir=args.images,
                               drop_missing_metadata=args.drop_missing_metadata,
                               val_fraction=args.val_fraction, seed=args.seed,
                               test_fraction=args.test_fraction, holdout_sources=args.holdout_source)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(prepared.report.lines()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prepared.index.to_csv(args.out, index=False)
    print(f"Wrote {len(prepared.index)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
