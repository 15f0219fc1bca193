"""A new input kind is one module and a line in KINDS: a kind registered there is accepted in a checkpoint and
reached by predict, its command line included, with nothing else changed."""
import json

import torch

import nettrain
from nettrain.cli import main
from nettrain.kinds import KINDS
from nettrain.kinds.vector import Vector
from nettrain.onnxpredict import READS

QUIET = {"run.progress": "none", "run.tensorboard": False, "run.report": False}


class Counts(Vector):
    """A toy kind: a text as two numbers, its characters and its words (what two-gaussians' mlp takes)."""
    name = "counts"
    reads = "texts"

    def batch(self, info, inputs) -> torch.Tensor:
        return super().batch(info, [[len(t), len(t.split())] for t in inputs])


def test_a_kind_in_KINDS_is_read_from_a_checkpoint_and_predicts_from_the_command_line(tmp_path, monkeypatch, capsys):
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "run", **QUIET)
    ckpt = torch.load(run.dir / "best.pt", weights_only=True)
    ckpt["data"]["kind"] = "counts"
    torch.save(ckpt, tmp_path / "counts.pt")
    monkeypatch.setitem(KINDS, "counts", Counts())
    assert main(["predict", str(tmp_path / "counts.pt"), "hello world", "a", "--topk", "1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["predictions"]
    want = run.model.predict(torch.tensor([[11.0, 2.0], [1.0, 1.0]])).topk(1)   # the counts, given as vectors
    assert [r["text"] for r in got] == ["hello world", "a"]
    assert [[(p["class"], p["probability"]) for p in r["predictions"]] for r in got] == \
        [[(c, round(p, 6)) for c, p in top] for top in want]


def test_the_onnx_reader_reads_the_command_line_as_each_kind_says():
    # onnxpredict.py keeps its own copy (it must not import torch, which nettrain.kinds does)
    assert READS == {name: kind.reads for name, kind in KINDS.items() if kind.reads is not None}
