"""The README and docs/ hold together: every relative link and #anchor resolves, every flag is documented,
and the README stays a front page."""
import glob
import os
import re

import pytest

import evaluate
import explore_latent_space
import study
from conftest import ROOT
from lab import training

PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading):
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    with open(path) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # a '#' in a code block is not a heading
    return {github_anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def links(path):
    with open(path) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        file_part, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(page), file_part)) if file_part else page
        if not os.path.exists(linked):
            broken.append(f"{target} (no such file)")
        elif anchor and linked.endswith(".md") and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(linked, ROOT)})")
    assert not broken, f"{os.path.relpath(page, ROOT)}: " + "; ".join(broken)


def test_the_anchor_rule_matches_githubs_on_this_projects_headings():
    assert github_anchor("From AutoEncoder to VAE: the β continuum") == "from-autoencoder-to-vae-the-β-continuum"
    assert github_anchor("Binarised MNIST and the best 2-D likelihood") == "binarised-mnist-and-the-best-2-d-likelihood"
    assert github_anchor("The `--jobs` flag") == "the---jobs-flag"


def test_readme_is_a_front_page_that_links_every_docs_page():
    with open(PAGES[0]) as f:
        readme = f.read()
    assert len(readme.splitlines()) <= 200
    for page in PAGES[1:]:
        assert f"docs/{os.path.basename(page)}" in readme, f"README.md does not link {os.path.basename(page)}"


def help_flags(parse_args, capsys):
    with pytest.raises(SystemExit):
        parse_args(["-h"])
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z_]*)", capsys.readouterr().out)) - {"--help"}


@pytest.mark.parametrize("script, parse_args", [("train.py", training.parse_args), ("evaluate.py", evaluate.parse_args),
                                                ("explore_latent_space.py", explore_latent_space.parse_args),
                                                ("study.py", study.parse_args)])
def test_every_flag_of_every_script_is_in_the_usage_page(script, parse_args, capsys):
    with open(os.path.join(ROOT, "docs", "usage.md")) as f:
        usage = f.read()
    section = usage.split(f"### {script}", 1)[1].split("\n### ", 1)[0]
    missing = sorted(flag for flag in help_flags(parse_args, capsys) if f"`{flag}" not in section)
    assert not missing, f"docs/usage.md, {script}: undocumented {missing}"

