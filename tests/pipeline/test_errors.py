"""A stage's exception becomes one line: every line of it joined, cut at a limit."""

from __future__ import annotations

from pipeline.errors import one_line


def test_multi_line_messages_keep_their_detail_on_one_line() -> None:
    torch_like = (
        "RuntimeError: Error(s) in loading state_dict for Sequential:\n"
        "\tsize mismatch for 0.weight: copying a param with shape torch.Size([8, 4])"
    )
    assert one_line(torch_like) == (
        "RuntimeError: Error(s) in loading state_dict for Sequential: size mismatch "
        "for 0.weight: copying a param with shape torch.Size([8, 4])"
    )
    long = one_line("ValueError: " + "x" * 1000, limit=50)
    assert len(long) == 50 and long.endswith("...") and "\n" not in long
