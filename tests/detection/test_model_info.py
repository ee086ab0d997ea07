"""detection.model_info: the record a checkpoint keeps of its model, and the one rule that
compares a model's class names with a dataset's."""
import pytest

from detection.config import ConfigError
from detection.model_info import ClassMismatchError, ModelInfo, describe_classes, match_classes


def test_same_classes_need_no_mapping():
    assert match_classes(["a", "b"], ["a", "b"], model="m", dataset="d") is None


@pytest.mark.parametrize("model,dataset,expected", [
    (["a", "b"], ["b", "a"], [1, 0]),
    (["cat", "dog", "bird"], ["bird", "cat", "dog"], [1, 2, 0]),
])
def test_permutation_maps_model_labels_to_dataset_labels(model, dataset, expected):
    label_map = match_classes(model, dataset, model="m", dataset="d")
    assert label_map == expected
    assert [dataset[label_map[i]] for i in range(len(model))] == model  # each label keeps its name


@pytest.mark.parametrize("dataset,detail", [
    (["x", "y"], "only the model has [a, b]; only the dataset has [x, y]"),
    (["a", "b", "c"], "only the dataset has [c]"),
    (["a"], "only the model has [b]"),
    (["a", "a"], "a class name repeats"),
])
def test_other_classes_are_refused_naming_both_lists(dataset, detail):
    with pytest.raises(ClassMismatchError) as err:
        match_classes(["a", "b"], dataset, model="the model in MODEL.WEIGHTS w.pth", dataset="DATASETS.TEST dataset 't'")
    text = str(err.value)
    assert "the model in MODEL.WEIGHTS w.pth has 2 classes [a, b]" in text
    assert f"DATASETS.TEST dataset 't' has {len(dataset)} classes {describe_classes(dataset)}" in text
    assert detail in text and "\n" not in text
    assert isinstance(err.value, ConfigError)  # the tools report it as a config error, exit 2


def test_describe_classes_shows_odd_names_and_cuts_long_lists():
    assert describe_classes(["a", "", " b", "c,d"]) == "[a, '', ' b', 'c,d']"
    assert describe_classes([str(i) for i in range(20)], limit=3) == "[0, 1, 2, ... (+17)]"


def test_model_info_round_trip_and_foreign_records():
    info = ModelInfo("LightHeadRCNN", "shufflenet_v2_0.5x", 2, ("a", "b"))
    assert ModelInfo.from_dict(info.to_dict()) == info
    assert info.architecture == "LightHeadRCNN + shufflenet_v2_0.5x"
    assert ModelInfo.from_dict(None) is None and ModelInfo.from_dict({"backbone": "x"}) is None
    partial = ModelInfo.from_dict({"meta_architecture": "FasterRCNN", "backbone": "b", "thing_classes": [1, 2]})
    assert partial.thing_classes is None and partial.num_classes is None
