"""Class configurations: built-ins, inline and YAML definitions, validation, manifest classes."""

import pytest

from screening.manifest import ClassSpec
from training.data.classes import ClassConfig, get_class_config
from training.data.errors import DataError


def test_ham7_classes_and_malignant_flags():
    config = get_class_config("ham7")
    assert config.class_names == ["nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"]
    assert [config.class_names[i] for i in config.malignant_indices] == ["mel", "bcc", "akiec"]
    assert config.class_of("scc") == "akiec"  # HAM10000's akiec includes Bowen's disease
    assert config.class_of("unk") is None


def test_paper5_merges_the_double_listed_nevi():
    config = get_class_config("paper5")
    assert config.class_names == ["nv", "bkl", "mel", "bcc"]
    assert [config.class_names[i] for i in config.malignant_indices] == ["mel", "bcc"]
    assert config.class_of("akiec") is None and config.class_of("df") is None


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(DataError) as err:
        get_class_config("ham8")
    assert str(err.value) == "unknown class configuration 'ham8'; use one of ham7, paper5 or a path to a .yaml file"


def test_inline_list_accepts_long_diagnosis_names():
    config = get_class_config([
        {"name": "benign", "label": "benign", "diagnoses": ["melanocytic nevi", "bkl"]},
        {"name": "malignant", "label": "malignant", "malignant": True,
         "diagnoses": ["melanoma", "basal cell carcinoma"]},
    ])
    assert config.name == "custom"
    assert config.class_of("nv") == "benign" and config.class_of("bcc") == "malignant"
    assert config.malignant_indices == [1]


def test_yaml_file_round_trips(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text("name: two\nclasses:\n"
                    "  - {name: nv, label: nevus, diagnoses: [nv]}\n"
                    "  - {name: mel, label: melanoma, malignant: true, diagnoses: [mel]}\n")
    config = get_class_config(str(path))
    assert config == ClassConfig.from_dict(config.to_dict())
    assert config.name == "two" and config.class_names == ["nv", "mel"]


def test_a_diagnosis_in_two_classes_is_rejected():
    with pytest.raises(DataError, match="diagnosis 'nv' is in both 'a' and 'b'"):
        ClassConfig.from_dict([{"name": "a", "diagnoses": ["nv"], "malignant": True},
                               {"name": "b", "diagnoses": ["nevus"]}])


def test_no_malignant_class_is_rejected():
    with pytest.raises(DataError, match="marks no class as malignant"):
        ClassConfig.from_dict([{"name": "nv"}, {"name": "bkl"}])


def test_unknown_diagnosis_in_a_class_is_rejected():
    with pytest.raises(DataError, match="diagnosis 'melanom' is not one of"):
        ClassConfig.from_dict([{"name": "mel", "diagnoses": ["melanom"], "malignant": True},
                               {"name": "nv"}])


def test_manifest_classes_keep_order_labels_and_flags():
    specs = get_class_config("paper5").to_manifest_classes()
    assert specs[2] == ClassSpec(name="mel", label="melanoma", malignant=True)
    assert [s.name for s in specs] == ["nv", "bkl", "mel", "bcc"]
