"""``python -m verl.trainer.config``: print the default config as YAML (this is how ppo_trainer.yaml is made).

    python -m verl.trainer.config                                        # YAML of every default
    python -m verl.trainer.config --markdown                             # the config reference tables
    python -m verl.trainer.config --markdown docs/examples/config.md     # regenerate that page (intro kept)
    python -m verl.trainer.config --markdown docs/examples/config.md --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl.trainer.config", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", nargs="?", const="-", metavar="PAGE",
                        help="print the Markdown reference (no PAGE), or regenerate PAGE below its marker line")
    parser.add_argument("--check", action="store_true", help="with --markdown PAGE: only report whether it is current")
    args = parser.parse_args(argv)
    if args.markdown is None:
        from verl.trainer.config.loader import dump_yaml

        print(dump_yaml(), end="")
        return 0
    from verl.trainer.config.reference import generated_markdown, render_page
    from verl.utils.config import ConfigError

    if args.markdown == "-":
        print(generated_markdown(), end="")
        return 0
    with open(args.markdown) as f:
        current = f.read()
    try:
        page = render_page(current)
    except ConfigError as exc:
        print(f"error: {args.markdown}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if page != current:
            print(f"{args.markdown} is out of date; run: python -m verl.trainer.config --markdown {args.markdown}",
                  file=sys.stderr)
            return 1
        return 0
    if page != current:
        with open(args.markdown, "w") as f:
            f.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
