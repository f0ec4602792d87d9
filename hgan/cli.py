"""The ``hgan`` command: a thin layer over the Python API.

Rules:
1. Results go to stdout (a rich table, or one JSON object with ``--json``);
   progress and messages go to stderr.
2. Exit status: 0 success, 1 a check failed, 2 usage or input error.
3. An ``HganError`` prints its message and hint, no traceback. Anything else
   prints "internal error, nothing released" (the traceback only with
   ``--debug``) and exits 1.
4. Subcommands are imported only when run: ``hgan sample`` never loads the
   training code of the hospital side.
"""

from __future__ import annotations

import importlib
import json
import sys

import click

from hgan.release.errors import HganError

# command name -> "module:attribute"; imported lazily (rule 4)
COMMANDS = {
    "audit": "hgan.audit.cli:audit",
    "demo": "hgan.appliance.cli:demo",
    "schema": "hgan.appliance.cli:schema",
    "train": "hgan.appliance.cli:train",
    "sample": "hgan.release.cli:sample",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hgan")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, envvar="HGAN_THREADS",
              help="CPU threads for torch (default 1: small models run fastest on one thread "
                   "and do not spin-wait on a busy server).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, threads: int | None) -> None:
    """H-GAN: differentially private generators of clinical tables."""
    ctx.ensure_object(dict)["debug"] = debug
    import torch

    torch.set_num_threads(threads or 1)


def main() -> None:
    """Console entry point."""
    sys.exit(run(sys.argv[1:]))


def run(argv: list[str]) -> int:
    """Run the CLI on ``argv``; map errors to exit statuses (rules 2-3)."""
    debug = "--debug" in argv
    as_json = "--json" in argv
    try:
        result = cli.main(args=argv, prog_name="hgan", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.Abort:
        click.echo("aborted, nothing released", err=True)
        return 1
    except HganError as exc:
        if as_json:
            click.echo(json.dumps(exc.to_dict()))
        click.secho(f"error: {exc.message}", fg="red", err=True)
        click.echo(f"  code: {exc.code}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        return exc.exit_status
    except Exception:
        if debug:
            raise
        click.secho("internal error, nothing released (run with --debug for the traceback)",
                    fg="red", err=True)
        return 1
