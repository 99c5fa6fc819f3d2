"""Progress output: a line every few percent when stderr is not a terminal."""

import io

from privhead.progress import progress_bar


def test_a_log_gets_a_line_every_five_percent_not_every_step():
    stream = io.StringIO()
    bar = progress_bar(total=2000, desc="stage1", stream=stream)
    for step in range(2000):
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix({"rgb": f"{step:.1f}"}, refresh=False)
    bar.close()
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert 20 <= len(lines) <= 24  # 0 %, every 5 %, and the close
    assert all(line.startswith("stage1:") for line in lines)
    assert "2000/2000" in lines[-1]


def test_disabled_bars_print_nothing():
    stream = io.StringIO()
    for _ in progress_bar(range(50), desc="x", disable=True, stream=stream):
        pass
    assert stream.getvalue() == ""
