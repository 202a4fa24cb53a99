"""The card and scale schema: the JSON schemas and the pydantic models agree key for key, and a bad
card fails in one line naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from cotlab import card_schema, cards
from cotlab.config import ConfigError
from cotlab.formats import FORMATS

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
SCHEMAS = REPO / "workflow" / "schemas"


def schema(name: str) -> dict:
    return yaml.safe_load((SCHEMAS / f"{name}.schema.yaml").read_text())

def test_schemas_list_the_cards_and_scales() -> None:
    props = schema("config")["properties"]
    assert "enum" not in str(props["experiments"])  # the cards are the files: a new one needs no edit here
    assert props["scale"]["enum"] == list(card_schema.SCALES) == list(cards.load_scales(CONFIG))
    assert set(props) == set(card_schema.WorkflowConfig.model_fields)


def test_schemas_mirror_the_pydantic_models() -> None:
    card, scales = schema("card"), schema("scales")
    assert set(card["properties"]) == set(card_schema.Card.model_fields)
    assert set(card["$defs"]["layer"]["properties"]) == set(card_schema.Layer.model_fields)
    assert set(card["properties"]["scales"]["additionalProperties"]["properties"]) == set(
        card_schema.Override.model_fields)
    assert set(card["properties"]["plot"]["properties"]) == set(card_schema.PlotSpec.model_fields)
    assert set(scales["additionalProperties"]["properties"]) == set(card_schema.Scale.model_fields)
    assert set(scales["$defs"]["rule"]["properties"]) == set(card_schema.RuleResources.model_fields)
    assert card["$defs"]["formats"]["items"]["enum"] == list(FORMATS)  # the one table of formats
    assert card["$defs"]["models"]["items"]["enum"] == list(card_schema.MODELS)
    assert card["properties"]["kind"]["enum"] == list(card_schema.KINDS)
    probe = card["$defs"]["probes"]["additionalProperties"]["properties"]
    assert set(probe) == set(card_schema.Probe.model_fields)
    assert list(probe["data"]["properties"]) == list(card_schema.SHAPE_FIELDS)
    assert probe["grid"]["propertyNames"]["enum"] == list(card_schema.PROBE_OPTIONS)
    assert probe["format"]["enum"][1:] == list(FORMATS)
    for exp_id in cards.card_ids(CONFIG):
        jsonschema.validate(yaml.safe_load((CONFIG / "experiments" / f"{exp_id}.yaml").read_text()), card)
    jsonschema.validate(yaml.safe_load((CONFIG / "scales.yaml").read_text()), scales)


BAD_CARDS = [  # (card, text the one-line error must contain)
    ({"title": "t", "colour": 1}, "colour: unknown key"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "sweep": {"vocab_size": []}}, "sweep.vocab_size=[]"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "sweep": {"vocab": [64]}}, "sweep.vocab: unknown key"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "base": {"data": {"n_parents": 5}}}, "n_parents=5"),
    ({"title": "t", "models": ["tf5"], "formats": ["cot"]}, "models.0='tf5'"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "scales": {"huge": {}}}, "scales.huge"),
    ({"title": "t", "models": ["tf4"]}, "models/formats"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "base": {"train": {"lr": -1.0}}}, "train.lr=-1.0"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot_special_token"]}, "format='cot_special_token'"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "seeds": 0}, "seeds=0: must be a positive integer"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "seeds": -2}, "seeds=-2: must be a positive integer"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "seeds": "2"}, "seeds='2'"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "seeds": 1.5}, "seeds=1.5"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "scales": {"smoke": {"seeds": 0}}}, "seeds=0"),
    ({"title": "t", "kind": "coverage", "seeds": 3}, "seeds=3: replicates of a card that trains nothing"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "probes": {"ood": {"data": {"vocab_size": 64}}}},
     "probe.data.vocab_size=64: a probe may change only n_inputs"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "probes": {"p": {"grid": {"drop": [1]}}}},
     "probe.grid.drop=[1]: must be one of drop_k"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "probes": {"p": {"grid": {"drop_k": []}}}},
     "probe.grid.drop_k=[]: needs at least one value"),
    ({"title": "t", "kind": "coverage", "probes": {"p": {}}}, "probes=['p']: only a runs card"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "base": {"eval_every_seqs": -5}},
     "base.eval_every_seqs=-5: must be a positive integer"),
    ({"title": "t", "models": ["tf4"], "formats": ["cot"], "scales": {"smoke": {"base": {"eval_every_seqs": 0}}}},
     "scales.smoke.base.eval_every_seqs=0: must be a positive integer"),
]


@pytest.mark.parametrize("card,message", BAD_CARDS)
def test_bad_card_fails_naming_the_field(tmp_path: Path, card: dict, message: str) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "scales.yaml").write_text((CONFIG / "scales.yaml").read_text())
    (tmp_path / "experiments" / "bad.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        cards.check_runs(cards.expand("bad", "smoke", tmp_path))
    assert "\n" not in str(info.value)
