"""The docs hold up: ports, links, the front page.

Every port the docs, deploy/ and examples quote for a service is that service's default port in code.

A port is read as `HOST:PORT` or `--port PORT` (also `port: PORT` in YAML); the service it belongs to is
the last of "reward" / "rollout" written before it on the same line (`--reward-address machine-a:P`,
`grpo-rollout serve --port P`, `rollout-0.rollout.grpo.svc:P`). A port no service name precedes must
still be one of the services' defaults. Ports that are not a service's (SGLang's 30000, torchrun's
29500, 0 = a free port) are told apart by their range: only 50000-50099 is checked.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from grpo_reward.service.config import RewardServiceConfig
from grpo_rollout.config import RolloutServiceConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {
    "reward": RewardServiceConfig().server.port,
    "rollout": RolloutServiceConfig.model_fields["server"].default_factory().port,  # type: ignore[misc]
}
PORT = re.compile(r"(?::|--port[ =]|port: |PORT=)\"?(500\d\d)\b")
SERVICE = re.compile(r"reward|rollout", re.IGNORECASE)


def documents() -> list[Path]:
    """What a user reads or runs: READMEs, docs/, deploy/, examples/, and the packages' docstrings."""
    found = [ROOT / "README.md", *ROOT.glob("packages/*/README.md"), *ROOT.glob("docs/**/*.md")]
    found += [p for p in (ROOT / "deploy").rglob("*") if p.is_file() and p.suffix != ".pem"]
    found += [p for p in (ROOT / "examples").rglob("*") if p.suffix in {".toml", ".md", ".yaml", ".py"}]
    found += list(ROOT.glob("packages/*/src/**/*.py"))
    return sorted(p for p in found if "_pb2" not in p.name)


def quoted_ports(text: str) -> list[tuple[int, str | None, str]]:
    """(port, the service named before it on its line or None, the line) for each port quoted."""
    quoted = []
    for line in text.splitlines():
        for match in PORT.finditer(line):
            services = SERVICE.findall(line[: match.start(1)])
            quoted.append((int(match.group(1)), services[-1].lower() if services else None, line.strip()))
    return quoted


def test_the_defaults_are_two_distinct_ports() -> None:
    assert DEFAULTS["reward"] != DEFAULTS["rollout"]
    assert all(50000 <= port < 50100 for port in DEFAULTS.values())  # the range this test reads


def test_a_quoted_port_is_read_with_its_service() -> None:
    line = "grpo-rollout serve --port 50052 --reward-address machine-a:50053  # rollout-0.x:1"
    assert quoted_ports(line) == [(50052, "rollout", line), (50053, "reward", line)]
    assert quoted_ports("grpcurl -plaintext 127.0.0.1:50051 list") == [
        (50051, None, "grpcurl -plaintext 127.0.0.1:50051 list")
    ]


def test_documented_ports_are_the_services_defaults() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: {line!r} quotes {port}, but {service or 'a service'} listens on "
        f"{DEFAULTS[service] if service else sorted(DEFAULTS.values())} by default"
        for path in documents()
        for port, service, line in quoted_ports(path.read_text(errors="replace"))
        if (port != DEFAULTS[service] if service else port not in DEFAULTS.values())
    ]
    assert not wrong, "\n".join(wrong)


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(path: Path) -> list[str]:
    """Relative links of a markdown file whose file, or whose `#section` in a markdown file, is missing."""
    broken = []
    for target in MARKDOWN_LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address, or a section of the same page
        file, _, section = target.partition("#")
        linked = (path.parent / file).resolve()
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif section and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
            if section not in {anchor(h) for h in headings}:
                broken.append(f"{target}: {linked.name} has no section '{section}'")
    return broken


def test_readme_links_and_anchors_resolve() -> None:
    pages = [ROOT / "README.md", *ROOT.glob("packages/*/README.md"), *ROOT.glob("docs/*.md")]
    pages += [
        ROOT / "benchmarks" / "README.md",
        ROOT / "deploy" / "README.md",
        *ROOT.glob("examples/*/README.md"),
    ]
    broken = [f"{page.relative_to(ROOT)}: {link}" for page in pages for link in broken_links(page)]
    assert not broken, "\n".join(broken)


def recording_benchmarks() -> list[str]:
    """The benchmark scripts that write their figures into RESULTS.md (through benchmarks/results_file.py)."""
    scripts = (ROOT / "benchmarks").glob("*.py")
    return sorted(
        p.name for p in scripts if re.search(r"^from results_file import", p.read_text(), re.MULTILINE)
    )


def test_every_recording_benchmark_links_its_recorded_figures_from_the_benchmarks_readme() -> None:
    """A benchmark that can `--record` has a row in benchmarks/README.md's table linking its section(s) of
    RESULTS.md (the link test checks that they exist), so no README points at figures never recorded."""
    table = (ROOT / "benchmarks" / "README.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| `")]
    scripts = recording_benchmarks()
    assert {"default_run.py", "real_size.py", "vs_trl_gain.py"} <= set(scripts)  # the scan finds them
    unlinked = [
        script
        for script in scripts
        if not any(
            row.split("|")[1].strip().startswith(f"`{script}") and "](RESULTS.md#" in row for row in rows
        )
    ]
    assert not unlinked, f"benchmarks/README.md has no row linking RESULTS.md for: {unlinked}"


def test_root_readme_is_short_and_shows_the_architecture_from_an_editable_source() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150, "the root README is a front page: move detail to docs/"
    assert "](docs/architecture.png)" in readme
    assert (ROOT / "docs" / "architecture.dot").is_file()  # the picture's source, rendered by graphviz


def test_a_link_checker_that_finds_a_missing_section(tmp_path: Path) -> None:
    (tmp_path / "RESULTS.md").write_text("# Results\n\n## Learner update\n")
    (tmp_path / "page.md").write_text("[a](RESULTS.md#learner-update) [b](RESULTS.md#gone) [c](nope.md)")
    assert broken_links(tmp_path / "page.md") == [
        "RESULTS.md#gone: RESULTS.md has no section 'gone'",
        "nope.md: no such file",
    ]


def test_learner_config_blocks_in_the_docs_validate() -> None:
    """A ```toml block whose sections are all the learner's is checked as a learner config (unknown
    keys are refused), over a model name, the one setting such a block may leave out."""
    from grpo_common.config import deep_merge
    from grpo_learner.config import LearnerConfig

    pages = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("packages/*/README.md")]
    blocks = [
        (page, block) for page in pages for block in re.findall(r"```toml\n(.*?)```", page.read_text(), re.S)
    ]
    from pydantic import ValidationError

    checked, invalid = 0, []
    for page, block in blocks:
        written = tomllib.loads(block)
        if set(written) <= set(LearnerConfig.model_fields):
            checked += 1
            try:
                LearnerConfig.model_validate(deep_merge({"model": {"name_or_path": "a-model"}}, written))
            except ValidationError as error:
                invalid.append(f"{page.relative_to(ROOT)}: {error}")
    assert not invalid, "\n".join(invalid)
    assert checked >= 5, (
        f"only {checked} learner config blocks found: has the learner README lost its examples?"
    )
