"""Patient metadata contract: one vocabulary and one encoding shared by training and screening.

A lesion's metadata (age, sex, anatomical site) becomes three categorical codes, each with an
explicit ``unknown`` value, and then one concatenated one-hot vector. The vocabulary (age bin
edges, sex values, site groups and the alias map from raw site strings) is saved in every
bundle manifest, and the runtime rebuilds the encoder from the manifest alone, so a model is
never screened with an encoding other than the one it was trained with.

Parsing is forgiving and never raises on a bad value: anything it cannot read becomes
``unknown`` and a human-readable warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

UNKNOWN = "unknown"

# Ten-year bins 0-9 ... 70-79 and a last open bin >=80, as in the source paper.
DEFAULT_AGE_EDGES = (10, 20, 30, 40, 50, 60, 70, 80)
# Ages outside this range are data-entry errors, not patients.
MAX_PLAUSIBLE_AGE = 120

DEFAULT_SEX_VALUES = ("female", "male")
SEX_ALIASES = {
    "f": "female", "female": "female", "woman": "female", "w": "female",
    "m": "male", "male": "male", "man": "male",
}

# The paper's six site groups. Its table lists the trunk under both upper and lower body;
# we resolve that once here: chest, back and an unqualified trunk/torso are upper body, the
# abdomen, flanks (ISIC "lateral torso"), lower back and buttocks are lower body.
DEFAULT_SITE_GROUPS = (
    "head_neck", "upper_body", "lower_body", "extremities", "genital_oral", "special",
)
DEFAULT_SITE_ALIASES = {
    # head and neck (HAM10000 face/scalp/ear/neck, ISIC head/neck)
    "head/neck": "head_neck", "head neck": "head_neck", "head": "head_neck",
    "neck": "head_neck", "face": "head_neck", "scalp": "head_neck", "ear": "head_neck",
    # upper body
    "chest": "upper_body", "back": "upper_body", "upper back": "upper_body",
    "trunk": "upper_body", "torso": "upper_body", "anterior torso": "upper_body",
    "posterior torso": "upper_body",
    # lower body
    "abdomen": "lower_body", "lateral torso": "lower_body", "lower back": "lower_body",
    "buttock": "lower_body", "buttocks": "lower_body", "gluteal": "lower_body",
    # extremities
    "upper extremity": "extremities", "lower extremity": "extremities", "arm": "extremities",
    "leg": "extremities", "hand": "extremities", "foot": "extremities",
    # genital and oral
    "genital": "genital_oral", "oral/genital": "genital_oral", "oral genital": "genital_oral",
    "oral": "genital_oral", "lip": "genital_oral", "mucosa": "genital_oral",
    # special areas (acral skin: palms, soles, nails)
    "acral": "special", "palms/soles": "special", "palms soles": "special", "palm": "special",
    "sole": "special", "nail": "special", "subungual": "special",
}
# Strings that explicitly mean "not recorded": mapped to unknown like an empty cell.
MISSING_STRINGS = frozenset({"", "unknown", "nan", "none", "na", "n/a", "null", "?", "-"})


def cell_text(value: Any) -> str:
    """Lower-cased, whitespace-normalised text of a raw cell; '' for missing cells."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    text = str(value).strip().lower().replace("_", " ")
    return " ".join(text.split())


@dataclass(frozen=True)
class MetaCodes:
    """Category indices of one lesion's metadata; the last index of each field is ``unknown``."""

    age: int
    sex: int
    site: int


@dataclass(frozen=True)
class MetadataVocabulary:
    """The categories of each field and how raw values map onto them."""

    age_edges: tuple[int, ...] = DEFAULT_AGE_EDGES  # upper-exclusive bin edges in years
    sex_values: tuple[str, ...] = DEFAULT_SEX_VALUES
    site_groups: tuple[str, ...] = DEFAULT_SITE_GROUPS
    site_aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SITE_ALIASES))

    @property
    def age_bins(self) -> list[str]:
        """Bin labels, e.g. ['0-9', ..., '70-79', '>=80', 'unknown']."""
        lows = (0, *self.age_edges)
        labels = [f"{lo}-{hi - 1}" for lo, hi in zip(lows, self.age_edges)]
        return [*labels, f">={self.age_edges[-1]}", UNKNOWN]

    @property
    def sexes(self) -> list[str]:
        return [*self.sex_values, UNKNOWN]

    @property
    def sites(self) -> list[str]:
        return [*self.site_groups, UNKNOWN]

    @property
    def field_sizes(self) -> tuple[int, int, int]:
        return len(self.age_bins), len(self.sexes), len(self.sites)

    @property
    def dim(self) -> int:
        """Length of the one-hot vector fed to the classifier's ``meta`` input."""
        return sum(self.field_sizes)

    @property
    def feature_names(self) -> list[str]:
        return ([f"age={b}" for b in self.age_bins] + [f"sex={s}" for s in self.sexes]
                + [f"site={s}" for s in self.sites])

    # -- parsing one field at a time; each returns (index, warning or None) -----------------

    def age_code(self, value: Any) -> tuple[int, str | None]:
        unknown = len(self.age_edges) + 1
        text = cell_text(value)
        if text in MISSING_STRINGS:
            return unknown, "age unknown"
        try:
            years = float(text)
        except ValueError:
            return unknown, f"age {str(value).strip()!r} is not a number, used unknown"
        if math.isnan(years) or years < 0 or years > MAX_PLAUSIBLE_AGE:
            return unknown, f"age {str(value).strip()!r} is out of range, used unknown"
        return int(np.searchsorted(self.age_edges, years, side="right")), None

    def sex_code(self, value: Any) -> tuple[int, str | None]:
        unknown = len(self.sex_values)
        text = cell_text(value)
        if text in MISSING_STRINGS:
            return unknown, "sex unknown"
        canonical = SEX_ALIASES.get(text, text)
        if canonical in self.sex_values:
            return self.sex_values.index(canonical), None
        return unknown, f"sex {str(value).strip()!r} not recognised, used unknown"

    def site_code(self, value: Any) -> tuple[int, str | None]:
        unknown = len(self.site_groups)
        text = cell_text(value)
        if text in MISSING_STRINGS:
            return unknown, "site unknown"
        group = self.site_aliases.get(text, text.replace(" ", "_"))
        if group in self.site_groups:
            return self.site_groups.index(group), None
        return unknown, f"site {str(value).strip()!r} not recognised, used unknown"

    def site_group(self, value: Any) -> str:
        """The site group name of a raw site string ('unknown' when unmapped)."""
        return self.sites[self.site_code(value)[0]]

    # -- whole records ------------------------------------------------------------------------

    def codes(self, age: Any = None, sex: Any = None, site: Any = None) -> tuple[MetaCodes, list[str]]:
        """Parse raw values into category codes, with one warning per field that is not usable."""
        (a, wa), (s, ws), (t, wt) = self.age_code(age), self.sex_code(sex), self.site_code(site)
        return MetaCodes(a, s, t), [w for w in (wa, ws, wt) if w]

    def unknown_codes(self) -> MetaCodes:
        n_age, n_sex, n_site = self.field_sizes
        return MetaCodes(n_age - 1, n_sex - 1, n_site - 1)

    def one_hot(self, codes: MetaCodes) -> np.ndarray:
        """The float32 vector of length ``dim`` with one 1 per field."""
        n_age, n_sex, _ = self.field_sizes
        vec = np.zeros(self.dim, dtype=np.float32)
        vec[codes.age] = 1.0
        vec[n_age + codes.sex] = 1.0
        vec[n_age + n_sex + codes.site] = 1.0
        return vec

    def encode(self, age: Any = None, sex: Any = None, site: Any = None) -> tuple[np.ndarray, list[str]]:
        """Raw values -> (one-hot vector, warnings). Never raises on a bad value."""
        codes, warnings = self.codes(age, sex, site)
        return self.one_hot(codes), warnings

    # -- manifest round trip --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "age_edges": list(self.age_edges),
            "age_bins": self.age_bins,
            "sex_values": list(self.sex_values),
            "site_groups": list(self.site_groups),
            "site_aliases": dict(sorted(self.site_aliases.items())),
            "unknown": UNKNOWN,
            "dim": self.dim,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MetadataVocabulary":
        vocab = cls(
            age_edges=tuple(int(e) for e in data["age_edges"]),
            sex_values=tuple(data["sex_values"]),
            site_groups=tuple(data["site_groups"]),
            site_aliases=dict(data["site_aliases"]),
        )
        if "dim" in data and int(data["dim"]) != vocab.dim:
            raise ValueError(f"metadata vocabulary says dim {data['dim']} but its fields give {vocab.dim}")
        return vocab


DEFAULT_VOCABULARY = MetadataVocabulary()
