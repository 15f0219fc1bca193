"""report.html: one self-contained page (inline CSS, images as base64 data URIs, no script, nothing fetched), so
it opens by double-click anywhere and can be mailed or archived as one file.

While a run trains, the page carries a meta refresh and the browser reloads it every few seconds; the final page
has none. Everything taken from the run directory is HTML-escaped: a run from elsewhere is data, never markup.

It reads on a phone as on a desktop: a viewport tag, tables that scroll inside their own box (a wide epochs table
or a long argv never widens the page), figures scaled to the width, each a link to its full-size file in the run's
figures/ folder (the one link that leaves the page: followed on a tap, never fetched to show it).
"""
from __future__ import annotations

import base64
import html
import math

from ..runs import RUN_FILES
from . import stats
from .read import Record

FIGURES = RUN_FILES["figures"]

REFRESH_SECONDS = 5

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:0 24px
 32px;color:#1f2328;background:#fff;overflow-wrap:anywhere}
h1{font-size:22px;margin:20px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
 padding-bottom:4px}
.status{color:#57606a;margin:0 0 12px}.live{color:#9a6700;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;
 min-width:130px}.card b{display:block;font-size:20px}.card span{color:#57606a;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}th,td{border:1px solid #d0d7de;padding:3px 8px;
 text-align:right}th{background:#f6f8fa}td.l,th.l{text-align:left}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px;overflow:auto;font-size:12px;
 overflow-wrap:normal}
.scroll{max-width:100%;overflow-x:auto}.scroll td,.scroll th{overflow-wrap:normal}
figure{margin:12px 0 20px}figure img{display:block;max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#57606a;font-size:13px}.note{color:#9a6700}td span{display:block;text-align:left;min-width:240px;
 max-width:700px;white-space:normal}
@media (max-width:600px){body{padding:0 10px 24px}h1{font-size:18px}.card{min-width:0;flex:1 1 40%}
 td span{min-width:160px}}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else _e(value)


def _pct(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def _table(header: list, rows: list, left: int = 1) -> str:
    """A table of already-escaped cells; the first `left` columns are aligned left (names)."""
    def cells(row, tag):
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{c}</{tag}>" for i, c in enumerate(row))
    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f'<div class="scroll"><table><tr>{cells(header, "th")}</tr>{body}</table></div>'   # scrolls in its box


def _cards(rec: Record) -> str:
    cards = _test_cards(rec)
    last = rec.metrics[-1] if rec.metrics else None
    if rec.held_out != "test" and last is not None:   # per-epoch "test" rows: the test cards' split and numbers
        if last.val_acc is not None:
            cards.append((f"last {rec.held_out} accuracy", f"<b>{_pct(last.val_acc)}</b>"))
        elif last.val_loss is not None:
            cards.append((f"last {rec.held_out} loss", f"<b>{_num(last.val_loss)}</b>"))
    t = stats.timings(rec.metrics)
    epochs = rec.section("train").get("epochs")
    cards.append(("epochs", f"<b>{t['epochs']}{'' if epochs is None else ' / ' + _e(epochs)}</b>"))
    cards.append(("training time", f"<b>{t['seconds']:.1f} s</b>"))
    if t["examples_per_s"] is not None:
        cards.append((f"{rec.examples}/s (median epoch)", f"<b>{t['examples_per_s']:,.0f}</b>"))
    return '<div class="cards">' + "".join(f'<div class="card">{v}<span>{_e(k)}</span></div>'
                                           for k, v in cards) + "</div>"


def _test_cards(rec: Record) -> list:
    """The test split's key numbers: accuracy and loss, or for a regression R^2, MAE and MSE (and the loss when
    it is not the MSE itself: targets the model saw standardized). test_metrics.json first, then what
    predictions.npz kept of them (a run of an older nettrain)."""
    found = {k: rec.test.get(k) for k in ("loss", "mse", "mae", "r2")}
    for key in ("loss", "mse", "mae"):
        if not isinstance(found[key], (int, float)) and rec.predictions.get(f"test_{key}") is not None:
            found[key] = float(rec.predictions[f"test_{key}"])
    number = {k: float(v) for k, v in found.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    cards = []
    acc = stats.accuracy(rec.confusion)
    if acc is not None:
        cards.append(("test accuracy", f'<b id="test-accuracy">{_pct(acc)}</b>'))
    for key, label in (("f1", "test F1 (second class)"), ("roc_auc", "test ROC-AUC"), ("micro_f1", "test micro F1")):
        if isinstance(rec.test.get(key), float):   # two classes; multi-label
            cards.append((label, f'<b id="test-{key.replace("_", "-")}">{_num(rec.test[key], 4)}</b>'))
    for key, label in (("r2", "test R\u00b2"), ("mae", "test MAE"), ("mse", "test MSE"), ("loss", "test loss")):
        if key == "loss" and "mse" in number and "loss" in number and \
                math.isclose(number["loss"], number["mse"], rel_tol=1e-6):
            continue   # the loss is the MSE: one card
        if key in number:
            cards.append((label, f'<b id="test-{key}">{_num(number[key])}</b>'))
    return cards


def _epochs_table(rec: Record) -> str:
    if not rec.metrics:
        return "<p>No epoch has finished yet.</p>"
    held = rec.held_out   # the split each epoch was evaluated on, named as the cards name it
    columns = [("epoch", "epoch", lambda v: _num(int(v)) if v is not None else "-"),
               ("train_loss", "train loss", _num), ("train_acc", "train acc", _pct),
               ("val_loss", f"{held} loss", _num), ("val_acc", f"{held} acc", _pct), ("val_mae", f"{held} MAE", _num),
               ("lr", "lr", lambda v: _num(v, 3)),
               ("seconds", "seconds", lambda v: _num(v, 3)),
               ("examples_per_s", f"{rec.examples}/s", lambda v: "-" if v is None else f"{v:,.0f}"),
               ("data_wait", "data wait", _pct), ("padding_waste", "padding", _pct)]
    shown = [c for c in columns if any(getattr(r, c[0]) is not None for r in rec.metrics)]
    return _table([label for _, label, _ in shown], [[fmt(getattr(r, key)) for key, _, fmt in shown]
                                                      for r in rec.metrics], left=0)


def _per_class_table(rec: Record) -> str:
    scores = stats.per_class(rec.confusion)
    rows = [[_e(name), _pct(scores["precision"][i]), _pct(scores["recall"][i]), _pct(scores["f1"][i]),
             f"{scores['support'][i]:,}"] for i, name in enumerate(rec.classes)]
    return _table(["class", "precision", "recall", "F1", "test examples"], rows)


def _timings(rec: Record) -> str:
    t = stats.timings(rec.metrics)
    rows = [["training time (all epochs)", f"{t['seconds']:.2f} s"]]
    if t["examples_per_s"] is not None:
        rows.append([f"{rec.examples}/s, median epoch", f"{t['examples_per_s']:,.0f}"])
    if t["data_wait"] is not None:
        rows.append(["data-wait share, mean of epochs", _pct(t["data_wait"])])
        rows.append(["data-wait share, worst epoch", _pct(t["data_wait_max"])])
    return _table(["", ""], rows)


def _environment(rec: Record) -> str:
    env = dict(rec.environment)
    device = str(env.get("device", ""))
    if "cuda" in env and not device.startswith("cuda"):   # torch's build, not this run's device: said as such
        env["torch built for CUDA"] = f"{env.pop('cuda')} (unused: the run trained on {device or 'the CPU'})"
    keys = ["nettrain", "device", "torch", "torchvision", "python", "cuda", "torch built for CUDA", "precision",
            "threads", "omp_wait_policy", "platform", "git", "argv"]
    rows = [[_e(k), _e(" ".join(map(str, env[k])) if isinstance(env[k], list) else env[k])]
            for k in keys + sorted(set(env) - set(keys)) if k in env]
    return _table(["", ""], rows, left=2) if rows else "<p>No environment.json.</p>"   # values are words


def _events(rec: Record) -> str:
    if not rec.events:
        return "<p>None: the run trained in one go.</p>"
    rows = [[_e(e.get("time", "")), _e(e.get("event", "")), _e(e.get("from_epoch", "")), _e(e.get("epochs", "")),
             _e(e.get("threads", "")), _e(e.get("device", "")),
             _e(", ".join(f"{k}: {v[0]} -> {v[1]}" if isinstance(v, list) and len(v) == 2 else f"{k}: {v}"
                          for k, v in (e.get("changed") or {}).items()) or "nothing")]
            for e in rec.events]
    return _table(["time", "event", "from epoch", "epochs", "threads", "device", "changed"], rows, left=7)


def _top_texts(rec: Record) -> str:
    """A text run's top losses as a table: each text as kept (escaped: a text is data, never markup)."""
    p = rec.predictions
    names = [str(c) for c in p.get("classes", [])]
    label = lambda k: _e(names[k]) if 0 <= k < len(names) else _e(k)   # noqa: E731
    rows = [[f"{loss:.3f}", label(int(t)), label(int(pr)), _pct(float(probs.max())),
             f'<span class="{"note" if t != pr else ""}">{_e(text)}</span>']
            for text, t, pr, probs, loss in zip(p["top_texts"], p["top_true"], p["top_pred"], p["top_probs"],
                                                p["top_loss"])]
    return _table(["loss", "true class", "predicted", "confidence", "text"], rows, left=0)


def _figures(figures: list) -> str:
    """Each figure inline, scaled to the page's width, and a link to its file at full size (FIGURES/name)."""
    return "".join(f'<figure id="{_e(name[:-4])}"><a href="{FIGURES}/{_e(name)}"><img alt="{_e(caption)}" '
                   f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"></a><figcaption>'
                   f'{_e(caption)} (<a href="{FIGURES}/{_e(name)}">{_e(name)}</a>, full size)</figcaption></figure>'
                   for name, caption, data in figures)


def page(rec: Record, figures: list, status: str, live: bool) -> str:
    """The whole page. `status`: one line on where the run stands; `live`: reload every REFRESH_SECONDS."""
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if live else ""
    data = rec.section("data")
    model = rec.section("model")
    title = f"nettrain run {rec.path.name}"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f'<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}<title>{_e(title)}</title>'
             f"<style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f'<p class="status{" live" if live else ""}" id="status">{_e(status)}</p>',
             f"<p>{_e(data.get('name', '?'))} | {_e(model.get('name', '?'))}</p>", _cards(rec),
             "<h2>Figures</h2>", _figures(figures) or "<p>No figures yet.</p>",
             "<h2>Epochs</h2>", _epochs_table(rec)]
    if rec.confusion is not None:
        parts += ["<h2>Per class (test split)</h2>", _per_class_table(rec)]
    if rec.predictions.get("top_texts") is not None and len(rec.predictions["top_texts"]):
        parts += ['<h2 id="top-texts">Top losses: the test texts most confidently wrong</h2>', _top_texts(rec)]
    elif rec.predictions.get("top_true") is not None and not len(rec.predictions["top_true"]):
        parts += ['<p id="top-losses">Top losses: none, every test example evaluated was predicted right.</p>']
    parts += ["<h2>Timings</h2>", _timings(rec), "<h2>Environment</h2>", _environment(rec),
              "<h2>Resumes</h2>", _events(rec),
              "<h2>Configuration (config.yaml)</h2>", f"<pre>{_e(rec.config_text) or 'none'}</pre>",
              "<h2>Model</h2>", f"<pre>{_e(rec.summary)}</pre>" if rec.summary else
              "<p>No model summary (model_summary.txt is written when a fit ends).</p>"]
    if rec.notes:
        parts += ["<h2>Notes</h2>", "".join(f'<p class="note">{_e(n)}</p>' for n in rec.notes)]
    parts.append("</body></html>\n")
    return "\n".join(parts)
