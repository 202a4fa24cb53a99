"""Every command fails a bad invocation the same way: exit status 2, no traceback, and one line on
stderr (after the usage lines argparse prints for its own errors) naming the field or file.

The invocations run in-process (`cotlab.cli.main`) in one workspace holding small train and eval
splits, a tiny trained run and a few bad files. Train, evaluate and prompts cases are only those
validated before any work, so they must also print nothing on stdout (no step, no score, no file).
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from cotlab.cli import COMMANDS, main
from test_config import BILLION_LAUGHS

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
POINT = "--set vocab_size=16 --set n_examples=2"
RUN = "--data tr --eval-data ev --out run2"
EVAL = "evaluate run --eval-data ev --out scores.parquet"
PROMPTS = "prompts ev --format cot --out prompts.parquet"
PLAN = f"plan --config {CONFIG}/config.yaml --config-dir {CONFIG}"
AGG = f"aggregate quickstart --config-dir {CONFIG} --results res"
BAD_FILES = ["alias.yaml", "bomb.yaml", "dup.yaml", "malformed.yaml", "tag.yaml", "latin1.yaml", "list.yaml"]


CASES = [  # (command line, text the one error line must contain)
    ("", "required: command"),
    ("nope", "invalid choice: 'nope'"),
    ("--bogus", "command"),
    # generate
    ("generate", "--out, --split"),
    ("generate --out x --split test", "argument --split"),
    ("generate --out x --split train --workers abc", "argument --workers"),
    ("generate --out x --split train --device tpu", "argument --device"),
    ("generate --out x --split train --max-memory 0", "argument --max-memory"),
    ("generate --out x --split train --workers 0", "workers=0"),
    ("generate --out x --split train --chunk-size -5", "chunk_size=-5"),
    ("generate --out x --split train --set vocab_size=64 --set vocab_size.x=3", "vocab_size is already set to 64"),
    ("generate --out x --split train --set novalue", "--set 'novalue'"),
    ("generate --out x --split train --set =3", "--set '=3'"),
    ("generate --out x --split train --set dag=[1", "--set 'dag=[1'"),
    ("generate --out x --split train --set 'dag=&a [1]'", "anchors and aliases"),
    ("generate --out x --split train --set colour=red", "colour: unknown key"),
    ("generate --out x --split train --set activation=tanh", "activation='tanh'"),
    ("generate --out x --split train --set vocab_size=1048577", "vocab_size=1048577"),
    ("generate --out x --split train --set n_dims=4097", "n_dims=4097"),
    ("generate --out x --split train --set n_examples=10001", "n_examples=10001"),
    ("generate --out x --split train --set chain_length=1001", "chain_length=1001"),
    ("generate --out x --split train --set n_inputs=1001", "n_inputs=1001"),
    ("generate --out x --split train --set fixed_h=true --set num_unique_h=1000001", "num_unique_h=1000001"),
    ("generate --out x --split train --set n_sequences=1099511627777", "n_sequences=1099511627777"),
    ("generate --out x --split train --set n_sequences=1000000000000", "n_sequences=1000000000000"),
    ("generate --out x --split train --set seed=4294967296", "seed=4294967296"),
    ("generate --out x --split train --set eval_seed=-1", "eval_seed=-1"),
    ("generate --out x --split train --set n_dims=4096 --set fixed_h=true --set num_unique_h=1000000",
     "num_unique_h"),
    ("generate --out x --split train --max-memory 0.001", "--max-memory"),
    ("generate --out x --split train --config missing.yaml", "missing.yaml"),
    *((f"generate --out x --split train --config {name}", name) for name in BAD_FILES),
    (f"generate --out afile/x --split train {POINT}", "afile"),
    (f"generate --out /proc/x --split train {POINT}", "/proc/x"),
    (f"generate --out /sys/x --split train {POINT}", "/sys/x"),
    (f"generate --out . --split train {POINT}", "--out='.'"),
    (f"generate --out notes --split train {POINT}", "--out='notes': exists and is not a cotlab dataset"),
    (f"generate --out ev --split train {POINT} --set n_sequences=16", "--out='ev'"),
    (f"generate --out tr --split train {POINT} --set seed=7", "--force replaces it"),
    # coverage
    ("coverage", "DIR"),
    ("coverage missing", "missing"),
    ("coverage empty", "empty/manifest.json"),
    ("coverage afile", "afile"),
    ("coverage corrupt", "corrupt/manifest.json"),
    ("coverage tr --n 0", "--n=0"),
    ("coverage tr --n 100000", "--n=100000"),
    ("coverage tr --n abc", "argument --n"),
    # plan
    ("plan --config missing.yaml", "missing.yaml"),
    *((f"plan --config {name}", name) for name in BAD_FILES),
    (f"plan --config empty.yaml --config-dir {CONFIG}", "experiments: required"),
    (f"{PLAN} --scale huge", "scale='huge'"),
    (f"{PLAN} --set experiments=[nocard]", "nocard"),
    (f"{PLAN} --set seeds=0", "seeds=0"),
    (f"{PLAN} --set bogus=1", "bogus: unknown key"),
    (f"{PLAN} --set scale=smoke --set scale.x=1", "scale is already set to 'smoke'"),
    (f"{PLAN} --set 'experiments=*a'", "anchors and aliases"),
    (f"plan --config {CONFIG}/config.yaml --config-dir badcards --set experiments=[quickstart]",
     "eval_every_seqs=-5"),
    (f"plan --config {CONFIG}/config.yaml --config-dir missing", "experiments"),
    # aggregate
    ("aggregate", "experiment"),
    (f"aggregate nocard --config-dir {CONFIG} --results res", "nocard"),
    (f"{AGG} --scale huge", "scale='huge'"),
    ("aggregate quickstart --config-dir missing --results res", "missing/scales.yaml"),
    ("aggregate quickstart --config-dir badcards --results res", "eval_every_seqs=-5"),
    (AGG, "metrics.parquet"),
    (f"aggregate claims --config-dir {CONFIG} --results res", "scale='smoke'"),
    # train: only what is checked before training
    ("train", "--data, --eval-data, --out"),
    (f"train {RUN} --format nope", "argument --format"),
    (f"train {RUN} --nproc 0", "--nproc=0"),
    (f"train {RUN} --set lr=-1", "lr=-1.0"),
    (f"train {RUN} --set model=tf99", "model='tf99'"),
    (f"train {RUN} --set nope=1", "nope: unknown key"),
    (f"train {RUN} --set batch_size=0", "batch_size=0"),
    (f"train {RUN} --set prompt.format=bogus", "prompt.format='bogus'"),
    (f"train {RUN} --set lr=1 --set lr.x=2", "lr is already set to 1"),
    (f"train {RUN} --set n_eval=1000", "n_eval=1000"),
    (f"train {RUN} --config missing.yaml", "missing.yaml"),
    (f"train {RUN} --config dup.yaml", "dup.yaml"),
    (f"train {RUN} --config bomb.yaml", "bomb.yaml"),
    ("train --data missing --eval-data ev --out run2", "missing"),
    ("train --data tr --eval-data missing --out run2", "missing"),
    ("train --data ev --eval-data ev --out run2", "--data='ev'"),
    ("train --data tr --eval-data tr --out run2", "--eval-data='tr'"),
    ("train --data tr --eval-data ev --out afile", "--out='afile'"),
    ("train --data tr --eval-data ev --out afile/run", "afile/run"),
    ("train --data tr --eval-data ev --out /proc/run", "/proc/run"),
    (f"train {RUN} --set seed=4294967296", "seed=4294967296"),
    # evaluate: only what is checked before scoring
    ("evaluate", "run_dir, --eval-data, --out"),
    (f"{EVAL} --batch-size abc", "argument --batch-size"),
    ("evaluate run --eval-data ev --out scores.csv", "out='scores.csv'"),
    (f"{EVAL} --n -1", "n=-1"),
    (f"{EVAL} --n 0", "n=0"),
    (f"{EVAL} --batch-size 0", "batch-size=0"),
    (f"{EVAL} --n-attn -2", "n-attn=-2"),
    (f"{EVAL} --device tpu", "device='tpu'"),
    ("evaluate missing --eval-data ev --out scores.parquet", "run_dir='missing'"),
    ("evaluate badrun --eval-data ev --out scores.parquet", "badrun/config.json"),
    ("evaluate run --eval-data missing --out scores.parquet", "missing"),
    ("evaluate run --eval-data tr --out scores.parquet", "eval-data='tr'"),
    (f"{EVAL} --formats bogus", "format='bogus'"),
    (f"{EVAL} --set bogus=1", "prompt.bogus: unknown key"),
    (f"{EVAL} --set drop_k=-1", "drop_k=-1"),
    (f"{EVAL} --set drop_k=1 --set drop_k.x=1", "drop_k is already set to 1"),
    (f"{EVAL} --formats ,", "formats"),
    ("evaluate run --eval-data ev --out /proc/scores.parquet", "/proc/"),
    # prompts: every option is checked before any prompt is rendered
    ("prompts", "DATA_DIR, --format, --out"),
    (f"{PROMPTS} --n abc", "argument --n"),
    (f"{PROMPTS} --n 0", "--n=0"),
    (f"{PROMPTS} --n 17", "--n=17: must be <= 16"),
    ("prompts ev --format cot --out prompts.csv", "--out='prompts.csv'"),
    ("prompts ev --format cots --out prompts.parquet", "--format='cots': must be a format (standard, cot"),
    ("prompts ev --format cotsp --out prompts.parquet", "format='cot_special_token': needs special_tokens=true"),
    ("prompts tr --format cot --out prompts.parquet", "DATA_DIR='tr': must be an eval split"),
    ("prompts missing --format cot --out prompts.parquet", "missing"),
    (f"{PROMPTS} --set drop_k=1", "drop_k=1"),
    (f"{PROMPTS} --set force=think", "force='think'"),
    (f"{PROMPTS} --set bogus=1", "prompt.bogus: unknown key"),
    (f"{PROMPTS} --set format=standard", "--set format='standard'"),
    ("prompts ev --format cot --out afile/prompts.parquet", "afile"),
    ("prompts ev --format cot --out /proc/prompts.parquet", "/proc/"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small train/eval splits, a tiny trained run, bad YAML files and directories of every kind."""
    ws = tmp_path_factory.mktemp("cli_errors")
    point = shlex.split(POINT)
    for split, n in (("train", 64), ("eval", 16)):
        out = ws / split[:2]
        assert main(["generate", "--out", str(out), "--split", split, *point, "--set", f"n_sequences={n}"]) == 0
    assert main(["train", "--data", str(ws / "tr"), "--eval-data", str(ws / "ev"), "--out", str(ws / "run"),
                 "--set", "n_train=32", "--set", "batch_size=16", "--set", "analysis_n=0"]) == 0
    shutil.copytree(ws / "ev", ws / "corrupt")
    manifest = json.loads((ws / "corrupt" / "manifest.json").read_text())
    (ws / "corrupt" / "manifest.json").write_text(json.dumps({**manifest, "n_rows": 17}))
    (ws / "badrun").mkdir()
    (ws / "badrun" / "config.json").write_text("{")
    for name in ("empty", "res", "notes"):
        (ws / name).mkdir()
    (ws / "notes" / "todo.txt").write_text("mine")
    (ws / "afile").write_text("a file, not a directory")
    files = {"alias.yaml": "experiments: &a [quickstart]\nscale: *a\n", "bomb.yaml": BILLION_LAUGHS,
             "dup.yaml": "scale: smoke\nexperiments: [quickstart]\nscale: mini\n", "malformed.yaml": "scale: [smoke\n",
             "tag.yaml": "scale: !!python/object/apply:os.system ['true']\n", "list.yaml": "- scale\n",
             "empty.yaml": "{}\n"}
    for name, text in files.items():
        (ws / name).write_text(text)
    (ws / "latin1.yaml").write_bytes(b"scale: r\xe9duced\n")
    shutil.copytree(CONFIG, ws / "badcards")
    card = ws / "badcards" / "experiments" / "quickstart.yaml"
    card.write_text(card.read_text().replace("eval_every_seqs: 6400", "eval_every_seqs: -5"))
    return ws


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("command, names", CASES, ids=[getattr(c, "id", None) or c[0] or "(none)" for c in CASES])
def test_bad_invocation(workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                        command: str, names: str) -> None:
    monkeypatch.chdir(workspace)
    before = listing(workspace)
    argv = shlex.split(command)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    while lines and (lines[0].startswith("usage: ") or lines[0].startswith(" ")):
        lines.pop(0)
    assert len(lines) == 1, err
    prog = f"cotlab {argv[0]}" if argv and argv[0] in COMMANDS else "cotlab"
    assert lines[0].startswith(f"{prog}: error: ") and names in lines[0], lines[0]
    if argv and argv[0] in ("train", "evaluate", "prompts"):
        assert out == "", "the command did work before it failed"
    assert listing(workspace) == before  # nothing written, not even a temp directory


def test_enough_cases() -> None:
    commands = {(getattr(c, "values", c)[0].split() or ["cotlab"])[0] for c in CASES}
    assert len(CASES) >= 60 and {"generate", "coverage", "plan", "aggregate", "train", "evaluate", "prompts"} <= commands
