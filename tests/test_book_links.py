"""Honest links: commits in provenance blocks link only to a real repository, never to the placeholder."""

from memlib.provenance import PLACEHOLDER_REPOSITORY, commit_link, repository_url


def test_commits_are_plain_code_under_the_placeholder():
    assert commit_link("abc123def456", PLACEHOLDER_REPOSITORY) == "`abc123def456`"
    assert commit_link("abc123def456", None) == "`abc123def456`"


def test_commits_link_to_a_real_repository():
    link = commit_link("abc123def456-dirty", "https://github.com/someone/memlib")
    assert link == "[`abc123def456-dirty`](https://github.com/someone/memlib/commit/abc123def456)"


def test_repository_url_ignores_the_placeholder(tmp_path):
    (tmp_path / "_config.yml").write_text(f"repository:\n  url: {PLACEHOLDER_REPOSITORY}/\n")
    assert repository_url(tmp_path) is None
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/someone/memlib\n")
    assert repository_url(tmp_path) == "https://github.com/someone/memlib"
