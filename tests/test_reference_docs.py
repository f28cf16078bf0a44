"""The generated reference pages match the code they are generated from, and every job key has a meaning.

docs/reference/job-file.md and cli.md are rendered by tools/gen_reference.py from batchscore/config.py's
schema and batchscore/cli.py's parser; this renders them again in memory and compares with the committed text.
"""

from __future__ import annotations

import importlib.util

from conftest import ROOT


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "tools" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_reference_pages_are_current():
    gen = _generator()
    for page, render in gen.PAGES.items():
        assert page.is_file(), f"{page} is missing: run python tools/gen_reference.py"
        assert page.read_text(encoding="utf-8") == render(), \
            f"{page.relative_to(ROOT)} is stale: run python tools/gen_reference.py and commit the result"


def test_every_job_key_has_a_meaning():
    from batchscore import config

    keys = [*config._SCHEMA, *(f"preprocess.{k}" for k in config._PREPROCESS_SCHEMA)]
    missing = [k for k in keys if not config.KEY_HELP.get(k)]
    assert not missing, f"add a line for {missing} to KEY_HELP in batchscore/config.py"
    assert not set(config.KEY_HELP) - set(keys), "KEY_HELP names keys the schema does not have"

