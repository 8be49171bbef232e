"""``dpedkit compare MODEL_OR_RUN... DATA``: several models on the same pairs and protocols, in one table."""

from __future__ import annotations

import click
from dpedkit_cli.options import FOLDER_OR_URL, config_options, local_dataset, resolved_config
from dpedkit_cli.render import console, handle_errors, print_json, table
from rich.markup import escape


@click.command(name="compare")
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=False))
@click.argument("data", type=FOLDER_OR_URL)
@config_options("evaluate")
@click.option("--name", "names", multiple=True, help="Row name of each model, in order (default: the arguments).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv"]), default="table", show_default=True,
              help="Table in the terminal, GitHub Markdown or CSV (both on stdout).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
@handle_errors
def command(models: tuple[str, ...], data: str, names: tuple[str, ...], fmt: str, as_json: bool, **options) -> None:
    """Score several models on the same test patches of DATA: one table, the identity baseline last.

    Each MODEL is a dpedkit checkpoint, a training run folder (its best.pt) or an official DPED checkpoint
    prefix; each is scored with the DPED and PIRM protocols on the same pairs.

    The paper's Table 2 for your data: `dpedkit compare models/iphone_orig runs/srcnn runs/dped data/iphone`.
    Options may come from --config FILE.toml ([evaluate]); flags typed here override it.
    """
    from dpedkit.evaluate import compare

    if names and len(names) != len(models):
        raise click.BadParameter(f"{len(names)} --name for {len(models)} models", param_hint="--name")
    config = resolved_config("evaluate", options)
    data = local_dataset(data, parts=[config.split])  # a URL: only the split scored
    with console.status("comparing") as status:
        result = compare(list(models), data, names=list(names) or None, config=config,
                         on_model=lambda name: status.update(f"scoring {name}"))  # fmt: skip
    if as_json:
        print_json(result.to_dict())
    elif fmt == "markdown":
        click.echo(result.markdown(), nl=False)
    elif fmt == "csv":
        click.echo(result.csv(), nl=False)
    else:
        from dpedkit.evaluate.compare import row_cells

        cols = ["model", "DPED PSNR dB", "DPED MS-SSIM", "PIRM PSNR dB", "PIRM MS-SSIM", "SSIM",
                *(["LPIPS"] * bool(config.lpips))]  # fmt: skip
        title = f"{result.n_pairs} {config.split} pairs, {escape(result.source)} ({result.device})"
        console.print(table(title, cols, [[escape(c) for c in row_cells(r)] for r in result.rows]))
