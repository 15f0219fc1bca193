"""Where start-up goes, in counts: the modules each command imports, and what a 1-epoch fit does once (or per
epoch) beyond the hand-written loop. Counts, not seconds: on a shared machine the seconds change from one run to
the next, the counts do not.

    python benchmarks/startup_profile.py > benchmarks/results/startup_profile.txt

Each command runs in its own process, which then reports its sys.modules; the fit runs once more under cProfile
(torch imported before the profile starts) for its call counts. The digits data and a 1-epoch mlp keep the
training itself negligible, so what is left is the fixed cost.
"""
from __future__ import annotations

import collections
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import ENV, QUIET, commit, cpu, prepare   # noqa: E402

HEAVY = ("torch", "torch._dynamo", "torch._inductor", "torch.utils.tensorboard", "torch.distributed", "torch.onnx",
         "torchvision", "tensorboard", "matplotlib", "sklearn", "scipy", "sympy", "triton", "PIL", "numpy", "yaml")
MODULES = """
import collections, json, runpy, sys
sys.argv = ["nettrain", *{args!r}]
if {hand!r}:
    exec({hand!r})
else:
    try:
        runpy.run_module("nettrain", run_name="__main__")
    except SystemExit:
        pass
def family(name):
    return max((h for h in {heavy!r} if name == h or name.startswith(h + ".")), key=len, default=None)
print(json.dumps({{"all": len(sys.modules), "families": collections.Counter(filter(None, map(family, sys.modules))),
                  "nettrain": sum(m.startswith("nettrain") for m in sys.modules)}}))
"""
# the hand loop a tutorial writes: the same data and model, SGD, one epoch, no files
HAND = """
import torch
from sklearn.datasets import load_digits
d = load_digits()
x, y = torch.tensor(d.data, dtype=torch.float32) / 16, torch.tensor(d.target)
model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128), torch.nn.ReLU(),
                            torch.nn.Linear(128, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for i in range(0, len(x), 64):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
    opt.step()
"""
COMMANDS = {
    "python -c 'import torch'": (None, "import torch"),
    "hand loop, digits, 1 epoch": (None, HAND),
    "nettrain --help": (["--help"], None),
    "nettrain list": (["list"], None),
    "nettrain report r": (["report", "r"], None),
    "nettrain compare r r2": (["compare", "r", "r2", "--out", "cmp"], None),
    "nettrain predict r one.png": (["predict", "r", "one.png"], None),
    "nettrain evaluate r": (["evaluate", "r"], None),
    "nettrain fit (defaults)": (["fit", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--run-dir", "f",
                                 "--overwrite", *QUIET], None),
    "nettrain fit, no report, no tensorboard": (["fit", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
                                                 "--run-dir", "f", "--overwrite", "--run.report", "false",
                                                 "--run.tensorboard", "false", *QUIET], None),
}
PROFILE = """
import cProfile, json, pstats, sys
import torch
from nettrain.cli import main
profile = cProfile.Profile()
profile.enable()
main({args!r})
profile.disable()
stats = pstats.Stats(profile).stats
calls = {{}}
for (file, line, name), (_, ncalls, *_rest) in stats.items():
    calls[f"{{file.split('site-packages/')[-1].split('src/')[-1]}}:{{name}}"] = ncalls
print(json.dumps(calls))
"""
# what a fit does beyond the hand loop, by the function that does it (file:function, as cProfile names them)
FIXED = {
    "nettrain/files.py:write_file": "files written (config, environment, metrics, checkpoints, report, ...)",
    "nettrain/engine/checkpoint.py:save": "checkpoints saved (last.pt each epoch, best.pt when it improves)",
    "nettrain/engine/checkpoint.py:save_safetensors": "best.safetensors written",
    "torch/serialization.py:save": "torch.save calls",
    "~:<built-in method posix.fsync>": "fsyncs (each checkpoint and run file is durable before it is renamed)",
    "nettrain/models/__init__.py:check_fits": "model checks (a forward pass on two examples before training)",
    "nettrain/tbreport.py:graph": "TensorBoard graph traces (torch.jit.trace of the model)",
    "nettrain/report/figures.py:png": "report figures drawn (matplotlib)",
    "nettrain/engine/loop.py:train_epoch": "training epochs",
    "nettrain/engine/loop.py:evaluate": "evaluation passes",
}


def child(code: str, cwd: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                         env={**__import__("os").environ, **ENV})
    if out.returncode != 0:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        prepare(where)
        print(f"# {datetime.date.today()}, {cpu()}, commit {commit()}: modules in sys.modules when the command is "
              f"done (counts)")
        print("| process | modules | nettrain's | " + " | ".join(HEAVY) + " |")
        print("|---|---|---|" + "---|" * len(HEAVY))
        for name, (args, hand) in COMMANDS.items():
            r = child(MODULES.format(args=args or [], hand=hand, heavy=HEAVY), where)
            print(f"| {name} | {r['all']} | {r['nettrain']} | " +
                  " | ".join(str(r["families"].get(h, "")) for h in HEAVY) + " |")
        fit = COMMANDS["nettrain fit (defaults)"][0]
        calls = {epochs: collections.Counter(child(PROFILE.format(args=[*fit, "--epochs", str(epochs)]), where))
                 for epochs in (1, 3)}
        print("\nnettrain fit (defaults), digits, mlp, under cProfile: calls of what a hand loop does not do, in a fit "
              "of 1 epoch and of 3 (what grows with the epochs is paid per epoch, the rest once)")
        print("| 1 epoch | 3 epochs | what | cProfile's name |")
        print("|---|---|---|---|")
        for key, what in FIXED.items():
            print(f"| {calls[1].get(key, 0)} | {calls[3].get(key, 0)} | {what} | {key} |")


if __name__ == "__main__":
    main()
