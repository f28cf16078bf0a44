"""The subcommands of `python -m batchscore`, one thin module each over the library.

Each module has the command's arguments (`add_arguments`) and its body (`run(args, comm) -> int`, whose
docstring is the command's help). Only cli.py imports them; no library module imports a command. Library
imports stay inside `run`, so that `--help` loads neither MPI nor an inference package.
"""
