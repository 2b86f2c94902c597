"""The README's shell commands name things that exist: every command in a ```bash block is a make
target, a flag of the program it names (checked against that program's --help), a file in the
repository, or a known outside tool; and the messages it promises are the ones the CLI prints."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()
# Outside tools the README's commands use; the repository's own commands are checked instead.
EXTERNAL = {"kubectl", "helm", ".tools/bin/helm", "curl", "hey", "docker", "cp", "mkdir", "echo", "cut", "base64"}
# Folders of the repository: a word that starts with one of them must be a path that exists.
TRACKED = ("components/", "pipelines/", "serving/", "scoring/", "manifests/", "helm/", "tests/", "bench/",
           "tools/", "images/")
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
REDIRECTIONS = {">", ">>", "<", "2>", "2>&1"}
# make variables that carry a program's flags: which program reads them, per target.
ARGS_VARIABLES = {"RUN_ARGS": ["-m", "pipelines.local.run"], "SERVE_ARGS": ["-m", "pipelines.local.serve"],
                  "UPLOAD_ARGS": ["-m", "pipelines.upload"], "SCORE_ARGS": ["-m", "scoring"]}
BENCH_PROGRAMS = {"bench": ["bench/serving_bench.py"], "bench-batch": ["bench/batch_bench.py"]}


def bash_commands(text: str) -> list[str]:
    """Each command line of the ```bash blocks: continuations joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", text, flags=re.S | re.M):
        joined, pending = re.sub(r"\\\n\s*", " ", block), ""
        for line in joined.splitlines():
            if not pending and (not line.strip() or line.strip().startswith("#")):
                continue
            pending += line + "\n"
            try:  # a quoted string may span lines (a JSON body): read on until it closes
                shlex.split(pending, comments=True)
            except ValueError:
                continue
            commands.append(pending.strip())
            pending = ""
        assert not pending, f"unclosed quote in a README block: {pending[:80]!r}"
    return commands


def simple_commands(line: str) -> list[list[str]]:
    """The words of each simple command of a line (pipes, &&, ;, & and $( ) split it; comments dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, words, skip_next = [], [], False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token in SEPARATORS:
            commands.append(words)
            words = []
        elif token in REDIRECTIONS:
            skip_next = True
        else:
            words.append(token)
    commands.append(words)
    # Leading VAR=value words are the command's environment; a command of nothing else is an assignment.
    result = []
    for words in commands:
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        if words and words[0] != "$":
            result.append(words)
    return result


def make_targets() -> set[str]:
    makefiles = [REPO_ROOT / "Makefile", *REPO_ROOT.glob("*.mk")]
    return {target for path in makefiles
            for target in re.findall(r"^([a-z][a-z0-9-]*):", path.read_text(), flags=re.M)}


@functools.cache
def help_text(program: tuple[str, ...]) -> str:
    result = subprocess.run([sys.executable, *program, "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"{' '.join(program)} --help failed: {result.stderr[-500:]}"
    return result.stdout


def flag_problems(program: list[str], words: list[str]) -> list[str]:
    """The --flags among words that the program's --help does not list."""
    shown = help_text(tuple(program))
    problems = []
    for word in words:
        if word.startswith("--") and len(word) > 2:
            flag = word.split("=", 1)[0]
            spellings = {flag, flag.replace("-", "_"), "--" + flag[2:].replace("_", "-")}
            if not any(re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", shown) for s in spellings):
                problems.append(f"{' '.join(program)} has no {flag}")
    return problems


def path_problems(words: list[str]) -> list[str]:
    problems = []
    for word in words:
        for candidate in dict.fromkeys([word, word.split("=", 1)[-1]]):
            if candidate.startswith(TRACKED) and not candidate.endswith(".local.env"):  # .local.env: the user's copy
                if not (REPO_ROOT / candidate).exists():
                    problems.append(f"{candidate} does not exist")
    return problems


def check_command(words: list[str]) -> list[str]:
    program, args = words[0], words[1:]
    problems = path_problems(args)
    if program == "make":
        targets = [word for word in args if not word.startswith("-") and "=" not in word]
        problems += [f"make has no target {t!r}" for t in targets if t not in make_targets()]
        for word in args:
            name, eq, value = word.partition("=")
            if not eq:
                continue
            reader = ARGS_VARIABLES.get(name)
            if name == "BENCH_ARGS":
                reader = BENCH_PROGRAMS[targets[0]]
            if reader:
                problems += flag_problems(reader, shlex.split(value))
        return problems
    if program in (".venv/bin/python", "python", "python3"):
        if args[:1] == ["-m"]:
            return problems + flag_problems(args[:2], args[2:])
        if args[:1] == ["-c"]:
            return problems
        return problems + path_problems(args[:1]) + flag_problems(args[:1], args[1:])
    if program not in EXTERNAL:
        problems.append(f"{program!r} is neither this project's command nor a known tool")
    return problems


COMMANDS = [words for line in bash_commands(README) for words in simple_commands(line)]


def test_the_readme_has_commands_to_check():
    assert len(COMMANDS) > 40
    assert sum(words[0] == "make" for words in COMMANDS) > 20


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(words)[:60])
def test_each_readme_command_names_a_target_flag_or_file_that_exists(words):
    assert check_command(words) == [], " ".join(words)


@pytest.mark.parametrize("words, expected", [
    ("make serve SERVE_ARGS='--port 1 --no-such-flag 2'".split(" ", 2), ["python -m pipelines.local.serve has no --no-such-flag"]),
    (["make", "srve"], ["make has no target 'srve'"]),
    ([".venv/bin/python", "-m", "pipelines.local.run", "--verbos"], ["-m pipelines.local.run has no --verbos"]),
    (["kubectl", "apply", "-k", "manifests/overlays/nowhere"], ["manifests/overlays/nowhere does not exist"]),
    (["frobnicate"], ["'frobnicate' is neither this project's command nor a known tool"]),
])
def test_the_checker_catches_a_wrong_command(words, expected):
    if words[0] == "make" and len(words) == 3:  # the SERVE_ARGS case: its value quoted as the README quotes it
        words = ["make", "serve", "SERVE_ARGS=--port 1 --no-such-flag 2"]
        expected = ["-m pipelines.local.serve has no --no-such-flag"]
    assert check_command(words) == expected


def test_commands_are_split_at_pipes_redirections_and_substitutions():
    line = ('SERVICE_HOSTNAME=$(kubectl -n ns get isvc x -o jsonpath=\'{.status.url}\' | cut -d/ -f3) '
            '&& echo "$SERVICE_HOSTNAME" > out.txt  # comment')
    assert [words[0] for words in simple_commands(line)] == ["kubectl", "cut", "echo"]


def _promised(start: str) -> list[str]:
    """Every `code span` of the README that begins with start: what the README says the CLI prints."""
    return sorted(set(re.findall(rf"`({re.escape(start)}[^`]*)`", README)))


def _as_pattern(promised: str) -> str:
    """The README's placeholders as regex: HOST:PORT a host and port, … anything."""
    pattern = re.escape(promised).replace(re.escape("HOST:PORT"), r"[\w.-]+:\d+")
    return pattern.replace(re.escape("…"), ".*")


@pytest.mark.parametrize("start, keys", [("cannot reach the object store at", True),
                                         ("no credentials for the object store at", False)])
def test_the_store_messages_the_readme_promises_are_what_the_cli_prints(start, keys, monkeypatch, capsys):
    from pipelines.local import run
    from pipelines.local.s3server import free_port

    monkeypatch.setenv("MINIO_ENDPOINT", f"127.0.0.1:{free_port()}")
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    if keys:
        monkeypatch.setenv("MINIO_ACCESS_KEY", "local-only-example")
        monkeypatch.setenv("MINIO_SECRET_KEY", "local-only-example-secret")
    assert run.main([]) == run.EXIT_BAD_INPUT
    printed = capsys.readouterr().err.strip().removeprefix("error: ")
    promised = _promised(start)
    assert promised, f"the README promises no message starting {start!r}"
    for text in promised:
        assert re.fullmatch(_as_pattern(text), printed), f"README: {text}\nCLI:    {printed}"
