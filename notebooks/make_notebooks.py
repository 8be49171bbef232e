"""Write the example notebooks (outputs empty) from the cell sources below: ``python notebooks/make_notebooks.py``.

Edit the cells here, not the ``.ipynb`` files, then rerun this script. Every notebook reads
``DPEDKIT_NOTEBOOK_SMALL=1`` (tiny settings, used by the tests and CI so the notebooks never rot) and
``DPEDKIT_SHARED`` (the folder of real test data, for notebook 03; default ``../shared`` beside the checkout).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = """\
import os
import tempfile
from pathlib import Path

from IPython.display import HTML, Image, display

SMALL = os.environ.get("DPEDKIT_NOTEBOOK_SMALL") == "1"  # tiny settings (tests, CI)
WORK = Path(os.environ.get("DPEDKIT_NOTEBOOK_DIR") or tempfile.mkdtemp(prefix="dpedkit-notebook-"))
WORK.mkdir(parents=True, exist_ok=True)
print("working in", WORK, "(small settings)" if SMALL else "")"""

SYNTH_AND_BUILD = """\
from dpedkit.config import BuildConfig
from dpedkit.dataset.build import build_dataset
from dpedkit.synth.pairs import synthesize

raw = WORK / "raw"
synthesize(raw, n=3 if SMALL else 12, seed=0, phone_mp=0.3 if SMALL else 3.0, dslr_mp=0.6 if SMALL else 6.0,
           overwrite=True)
dataset = WORK / "dataset"
summary = build_dataset(raw / "phone", raw / "dslr", dataset, config=BuildConfig(test_images=1 if SMALL else 2), jobs=2)
summary.to_dict()"""

NB1 = [
    new_markdown_cell(
        "# 01: build a dataset and inspect its alignment\n\n"
        "Synthetic phone/DSLR pairs with a known geometry (`dpedkit.synth.pairs`, made from photos bundled with "
        "scikit-image) are aligned, cut into 100x100 patch pairs and written as HDF5 shards "
        "(`dpedkit.dataset.build`). Then the alignment diagnostics behind `dpedkit inspect` are shown inline. "
        "The same in the terminal: `dpedkit synth raw && dpedkit build raw/phone raw/dslr -o dataset && "
        "dpedkit inspect dataset`."
    ),
    new_code_cell(SETUP),
    new_code_cell(SYNTH_AND_BUILD),
    new_markdown_cell("## Dataset summary: pairs by status, patches per split, worst pairs first"),
    new_code_cell(
        """\
from dpedkit.inspect import pictures as pic
from dpedkit.inspect.summary import summarize_dataset

s = summarize_dataset(dataset)
print("pairs by status:", s.status_counts)
print("ok pairs per split:", s.split_pairs, "| kept patches per split:", s.split_patches)
print(f"kept {s.patches_kept} of {s.patches_total} candidate windows (NCC >= {s.ncc_min})")
for p in s.pairs:
    print(f"{p['pair']}: {p['status']:>8}  kept {p['kept_fraction']:.2f}  inliers {p.get('inliers')}  "
          f"RMSE {p.get('rmse_px', float('nan')):.3f} px")"""
    ),
    new_markdown_cell("## Plots: kept fraction per pair, inliers vs RMSE, residual shift and angle of kept patches"),
    new_code_cell(
        """\
names = [p["pair"] for p in s.pairs]
display(Image(pic.kept_fraction_png(names, [p["kept_fraction"] for p in s.pairs],
                                   failed=[p["status"] != "ok" for p in s.pairs])))
ok = [p for p in s.pairs if p["status"] == "ok"]
inliers, rmse = [p["inliers"] for p in ok], [p["rmse_px"] for p in ok]
display(Image(pic.inliers_rmse_png(inliers, rmse, names=[p["pair"] for p in ok])))
display(Image(pic.shift_angle_png(s.columns["shift"], s.columns["angle"])))"""
    ),
    new_markdown_cell(
        "## The worst pair, re-aligned: matches, checkerboard, blend, difference, patch grid, shift field\n\n"
        "The dataset stores the kept patches only, so the pair is re-aligned from its photos with the build's "
        "configuration; its candidate windows (kept or not) give the NCC histogram."
    ),
    new_code_cell(
        """\
from dpedkit.inspect.views import dataset_pair_view

worst = ok[0]["pair"]
view = dataset_pair_view(dataset, worst, width=700)
print(worst, view.metrics)
for key, (_mime, data) in view.images.items():
    print(view.captions[key])
    display(Image(data))
display(Image(pic.ncc_histogram_png(view.candidates["ncc"], threshold=s.ncc_min, kept=view.candidates["kept"])))"""
    ),
    new_markdown_cell("## Kept patch pairs with the lowest NCC (phone | DSLR)"),
    new_code_cell(
        """\
import numpy as np

from dpedkit.dataset.format import DatasetDir

low = np.argsort(s.columns["ncc"])[:6]
phone, dslr = DatasetDir(dataset).read_patches(low)
for i, k in enumerate(low):
    print(s.columns["pair"][k], "NCC", round(float(s.columns["ncc"][k]), 3))
    display(Image(pic.encode_png(pic.patch_strip(phone[i], dslr[i]))))"""
    ),
    new_markdown_cell("## The whole report: one self-contained HTML file"),
    new_code_cell(
        """\
from dpedkit.config import ReportConfig
from dpedkit.inspect.report import write_report

report = write_report(dataset, WORK / "report.html", config=ReportConfig(pair_views=2 if SMALL else 12))
print(report.path, f"{report.size_bytes / 1e6:.1f} MB", report.sections)
display(HTML(f"<a href='{report.path.as_uri()}'>open the report</a>"))"""
    ),
]

NB2 = [
    new_markdown_cell(
        "# 02: train a model and evaluate it\n\n"
        "A short training run on a small synthetic dataset, then the evaluation table (DPED protocol, PIRM "
        "protocol and the identity baseline). As in `dpedkit demo`, the phone photos get one consistent camera "
        "look for the network to learn, and a tiny SRCNN (no VGG weights needed) starts at the identity. The "
        "DPED recipe (`model='dped'`) needs `imagenet-vgg-verydeep-19.mat` for its content loss. Terminal twin: "
        "`dpedkit train dataset -o run --model srcnn --iters 300 && dpedkit evaluate run/best.pt dataset`."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """\
from dpedkit.config import BuildConfig
from dpedkit.dataset.build import build_dataset
from dpedkit.demo import PHONE_LOOK, apply_look
from dpedkit.io import list_images, read_rgb, write_image
from dpedkit.synth.pairs import synthesize

raw = WORK / "raw"
synthesize(raw, n=3 if SMALL else 8, seed=0, phone_mp=0.3 if SMALL else 0.5, dslr_mp=0.6 if SMALL else 1.0,
           overwrite=True)
for path in list_images(raw / "phone"):  # one phone "camera": the same look on every phone photo
    write_image(path, apply_look(read_rgb(path), PHONE_LOOK), quality=92)
dataset = WORK / "dataset"
summary = build_dataset(raw / "phone", raw / "dslr", dataset, config=BuildConfig(test_images=1 if SMALL else 2), jobs=2)
summary.to_dict()"""
    ),
    new_code_cell(
        """\
from dpedkit.demo import TINY_SRCNN, identity_srcnn
from dpedkit.train import TrainConfig, train

init = identity_srcnn(TINY_SRCNN, WORK / "identity-srcnn.pt")  # output = input at step 0
config = TrainConfig(model="srcnn", model_config=TINY_SRCNN, init=str(init), iters=20 if SMALL else 300,
                     batch=8 if SMALL else 16, lr=2e-3, eval_every=10 if SMALL else 50, device="auto", seed=0)
result = train(dataset, WORK / "run", config=config)
for row in result.history:
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})"""
    ),
    new_code_cell(
        """\
from dpedkit.config import EvalConfig
from dpedkit.evaluate import evaluate

scores = evaluate(WORK / "run" / "best.pt", dataset, config=EvalConfig(device="auto"))
rows = [("model", scores.model), ("identity (phone as is)", scores.identity)]
table = "".join(
    f"<tr><td>{name}</td><td>{s.dped_psnr:.2f}</td><td>{s.dped_ms_ssim:.4f}</td>"
    f"<td>{s.pirm_psnr:.2f}</td><td>{s.ssim:.4f}</td></tr>" for name, s in rows
)
display(HTML(f"<p>{scores.n_pairs} test patch pairs</p><table><tr><th></th><th>DPED PSNR</th><th>DPED MS-SSIM</th>"
             f"<th>PIRM PSNR</th><th>SSIM</th></tr>{table}</table>"))"""
    ),
    new_markdown_cell("## Sample grid of the last evaluation (phone | enhanced | DSLR)"),
    new_code_cell(
        """\
samples = sorted((WORK / "run" / "samples").glob("*.png"))
print(samples[-1].name if samples else "no samples")
if samples:
    display(Image(filename=str(samples[-1])))"""
    ),
]

NB3 = [
    new_markdown_cell(
        "# 03: enhance photos with the official DPED iPhone model\n\n"
        "dpedkit reads the official TensorFlow checkpoint directly (no TensorFlow needed), scores it on the "
        "100 real DPED test pairs and enhances a full-resolution photo. Terminal twins: "
        "`dpedkit evaluate ../shared/models/dped_orig/iphone_orig ../shared/data/dped --phone iphone` and "
        "`dpedkit enhance ../shared/models/dped_orig/iphone_orig photo.png -o out/`."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """\
here = Path.cwd()
SHARED = Path(os.environ.get("DPEDKIT_SHARED") or here.parent.parent / "shared")
MODEL = SHARED / "models" / "dped_orig" / "iphone_orig"
DPED = SHARED / "data" / "dped"
print(MODEL, MODEL.with_suffix(".index").is_file())"""
    ),
    new_code_cell(
        """\
from dpedkit.nn.checkpoint import load_model

model = load_model(MODEL)  # the official TF checkpoint prefix, read without TensorFlow
print(type(model).__name__, sum(p.numel() for p in model.parameters()), "parameters")"""
    ),
    new_markdown_cell("## Scores on the 100 DPED test pairs (the paper's Table 2 protocol: PSNR 19.40 dB)"),
    new_code_cell(
        """\
from dpedkit.config import EvalConfig
from dpedkit.evaluate import evaluate

scores = evaluate(model, DPED, config=EvalConfig(phone="iphone", device="auto"))
print(f"{scores.n_pairs} pairs | model: DPED PSNR {scores.model.dped_psnr:.2f} dB, MS-SSIM "
      f"{scores.model.dped_ms_ssim:.3f} | identity: {scores.identity.dped_psnr:.2f} dB")"""
    ),
    new_markdown_cell("## Enhance a full-resolution photo (a crop of it with small settings)"),
    new_code_cell(
        """\
from dpedkit.enhance import enhance_array
from dpedkit.inspect import pictures as pic
from dpedkit.io import read_rgb, to_uint8

photo = read_rgb(SHARED / "data" / "dped_hd" / "0.png")
if SMALL:
    photo = photo[:256, :384]
out, strips = enhance_array(model, photo, max_memory=2.0)  # strips > 0: tiled with exact instance-norm statistics
enhanced = to_uint8(out)
print(photo.shape, "->", enhanced.shape, enhanced.dtype, f"({strips} strips)" if strips else "(whole image)")
display(Image(pic.encode_jpeg(pic.fit_width(photo, 700)[0])))
display(Image(pic.encode_jpeg(pic.fit_width(enhanced, 700)[0])))"""
    ),
]

NOTEBOOKS = {
    "01_build_and_inspect.ipynb": NB1,
    "02_train_and_evaluate.ipynb": NB2,
    "03_enhance_with_official_model.ipynb": NB3,
}


def build(folder: Path) -> list[Path]:
    """Write every notebook into ``folder`` (outputs empty, python3 kernel); returns the paths."""
    out = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"  # stable ids: regenerating gives no diff
        nbformat.validate(nb)
        path = folder / name
        path.write_text(nbformat.writes(nb) + "\n")
        out.append(path)
    return out


if __name__ == "__main__":
    for p in build(Path(__file__).resolve().parent):
        print(p)
