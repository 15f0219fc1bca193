"""A new input kind is one module and a line in KINDS: a kind registered there is accepted in a checkpoint and
reached by predict, its command line included, with nothing else changed."""
import json

import torch

import nettrain
from nettrain.cli import main
from nettrain.kinds import KINDS
from nettrain.kinds.vector import Vector
from nettrain.onnxpredict import READS
from conftest import QUIET_API


class Counts(Vector):
    """A toy kind: a text as two numbers, its characters and its words (what two-gaussians' mlp takes)."""
    name = "counts"
    reads = "texts"

    def batch(self, info, inputs) -> torch.Tensor:
        return super().batch(info, [[len(t), len(t.split())] for t in inputs])


def test_a_kind_in_KINDS_is_read_from_a_checkpoint_and_predicts_from_the_command_line(tmp_path, monkeypatch, capsys):
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "run", **QUIET_API)
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


def test_without_a_model_the_datas_kind_chooses_it_and_config_yaml_records_the_choice(tmp_path):
    import yaml
    for dataset, chosen in (("iris", "mlp"), ("digits", "cnn")):
        run = nettrain.fit(dataset=dataset, epochs=1, run_dir=tmp_path / dataset, **QUIET_API)
        assert yaml.safe_load((run.dir / "config.yaml").read_text())["model"]["name"] == chosen
        assert nettrain.load(run.dir).config.model.name == chosen


def test_a_text_file_without_a_model_trains_fasttext(tmp_path):
    rows = [("good fun", "pos"), ("bad dull", "neg")] * 10 + [(f"good {i}", "pos") for i in range(10)]
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    run = nettrain.fit(dataset="text", data_dir=str(path), epochs=1, run_dir=tmp_path / "run", **QUIET_API)
    assert type(run.model.module).__name__ == "FastText"


def test_a_collate_functions_batches_without_a_model_are_refused_in_one_line(tmp_path):
    import pytest
    from nettrain.errors import ConfigError
    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return torch.tensor([1, 2, 3][: 1 + i % 3]), i % 2

    pad = lambda batch: (torch.nn.utils.rnn.pad_sequence([x for x, _ in batch], batch_first=True),  # noqa: E731
                         torch.tensor([y for _, y in batch]))
    with pytest.raises(ConfigError, match="no built-in model reads them; give your own: model="):
        nettrain.fit(data=Items(), collate_fn=pad, epochs=1, run_dir=tmp_path / "run", **QUIET_API)
    assert not (tmp_path / "run").exists()
