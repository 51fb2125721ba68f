"""Time parse + map of one model message, the per-turn work the environment does before calling a tool.

The corpus mixes well-formed 2048 and computer-use turns (with and without <think>, keyword arguments, long
strings) with the malformed output small models produce (no tags, unclosed tags, bad syntax, unknown actions,
prose around the call). Each message is parsed with `TurnParser.parse_turn` and, when a call comes out, mapped
with the config's `ActionMapper`. The baseline is verifiers' own `vf.XMLParser(["think", "tool"]).parse` on the
same messages, timed in the same process; it only extracts the tags (no call parsing, no mapping), so the ratio
says what the extra work costs.

Run: `python bench/parse_map.py [--repeats 200] [--profile]`
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

TARGET_MEDIAN_US = 100.0  # the budget for parse + map of one message
DEFAULT_REPEATS = 200  # timings per message; the median of many runs hides scheduler noise


@dataclass(frozen=True)
class Message:
    """One corpus entry: which config's parser and mapper read it, a kind for the table, and the text."""

    config: str
    kind: str
    text: str


def build_corpus() -> list[Message]:
    """Return a realistic mix of 2048 and computer-use turns, well-formed and malformed."""
    long_text = "Dear team, " + "the quarterly numbers, as discussed (see <b>attached</b>), look fine. " * 12
    corpus = [
        # 2048: the config asks for no thinking
        *(Message("2048", "2048 plain", f"<tool>{move}()</tool>") for move in ("left", "right", "up", "down")),
        Message("2048", "2048 plain", '<tool>move("LEFT")</tool>'),
        Message("2048", "2048 plain", "<tool>move(direction='up')</tool>"),
        Message("2048", "2048 think", "<think>Merging the 4s on the left keeps the corner.</think><tool>left()</tool>"),
        Message("2048", "2048 think", "<think>\nUp breaks the chain; go right.\n</think>\n<tool>\nright()\n</tool>"),
        # computer use: think, then one action
        Message("default", "cu think", "<think>I need to see the screen first.</think>\n<tool>screenshot()</tool>"),
        Message("default", "cu think", "<think>The search box is at the top.</think>\n<tool>click(640, 120)</tool>"),
        Message("default", "cu think", "<think>Select all, then replace.</think>\n<tool>key(\"ctrl+a\")</tool>"),
        Message("default", "cu think", "<think>The list continues below.</think>\n<tool>scroll(\"down\", 3)</tool>"),
        Message("default", "cu think", "<think>The page is loading.</think>\n<tool>wait(2.5)</tool>"),
        Message("default", "cu think", "<think>Everything is saved.</think>\n<tool>done()</tool>"),
        Message("default", "cu no think", "<tool>screenshot()</tool>"),
        Message("default", "cu no think", "<tool>click(100, 200)</tool>"),
        Message("default", "cu keywords", "<think>Menu.</think>\n<tool>click(x=412, y=87, button='right')</tool>"),
        Message("default", "cu keywords", "<tool>scroll(direction='up', amount=5)</tool>"),
        Message("default", "cu long string", f"<think>Write the reply.</think>\n<tool>type({long_text!r})</tool>"),
        Message("default", "cu long string", '<tool>type("a < b, \\"quoted\\", </tool> and unicode: café ✓")</tool>'),
        # malformed
        Message("default", "no tags", "I would click on the search box at (640, 120) and then type my query."),
        Message("2048", "no tags", "left"),
        Message("default", "unclosed", "<think>Take a look first.\n<tool>screenshot()"),
        Message("2048", "unclosed", "<tool>left()"),
        Message("default", "bad syntax", "<think>Click it.</think>\n<tool>click(640, 120</tool>"),
        Message("default", "bad syntax", "<tool>type(hello world)</tool>"),
        Message("default", "bad syntax", "<tool>click(320+10, 200)</tool>"),
        Message("default", "unknown action", "<think>Open the menu.</think>\n<tool>right_click(10, 20)</tool>"),
        Message("2048", "unknown action", "<tool>slide('left')</tool>"),
        Message("default", "prose around", "Sure!\n<think>Look first.</think>\n<tool>screenshot()</tool>\nDone."),
        Message("2048", "prose around", "The best move is left because it merges two tiles.\n\n<tool>left()</tool>"),
        Message("default", "prose around", "```\n<tool>key('enter');</tool>\n```"),
    ]  # fmt: skip
    return corpus


def _time_each(function: Callable[[str], object], text: str, repeats: int) -> list[float]:
    """Return `repeats` timings of `function(text)` in microseconds."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        function(text)
        timings.append((time.perf_counter_ns() - start) / 1000)
    return timings


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _parse_and_map_functions() -> dict[str, Callable[[str], object]]:
    from hud_vf_gym.config import load_config
    from hud_vf_gym.core.actions import ActionMapper
    from hud_vf_gym.core.parser import TurnParser

    functions: dict[str, Callable[[str], object]] = {}
    for name in ("2048", "default"):
        config = load_config(name)
        parser = TurnParser(use_thinking=config.parser.use_thinking)
        mapper = ActionMapper(config.action_mappings, config.passthrough_tools)

        def parse_and_map(text: str, parser: TurnParser = parser, mapper: ActionMapper = mapper) -> object:
            turn = parser.parse_turn(text)
            return mapper.map(turn.call) if turn.call is not None else turn.error

        functions[name] = parse_and_map
    return functions


def run(repeats: int) -> None:
    """Time the corpus and print the table, the overall median and the ratio against the baseline."""
    import verifiers as vf

    baseline_parser = vf.XMLParser(["think", "tool"], answer_field="tool")
    functions = _parse_and_map_functions()
    corpus = build_corpus()
    for message in corpus:  # warm up caches and imports before timing
        functions[message.config](message.text)
        baseline_parser.parse(message.text)

    ours: dict[str, list[float]] = {}
    baseline: list[float] = []
    for message in corpus:
        ours.setdefault(message.kind, []).extend(_time_each(functions[message.config], message.text, repeats))
        baseline.extend(_time_each(baseline_parser.parse, message.text, repeats))

    counts: dict[str, int] = {}
    for message in corpus:
        counts[message.kind] = counts.get(message.kind, 0) + 1
    print(f"parse + map, {len(corpus)} messages x {repeats} repeats (µs per message)")
    print(f"{'message kind':<16} {'count':>5} {'median':>8} {'p90':>8}")
    for kind, timings in ours.items():
        print(f"{kind:<16} {counts[kind]:>5} {statistics.median(timings):>8.1f} {_percentile(timings, 0.9):>8.1f}")
    every = [value for timings in ours.values() for value in timings]
    overall, baseline_median = statistics.median(every), statistics.median(baseline)
    print(f"{'all':<16} {len(corpus):>5} {overall:>8.1f} {_percentile(every, 0.9):>8.1f}")
    print(f"baseline vf.XMLParser.parse: median {baseline_median:.1f} µs, p90 {_percentile(baseline, 0.9):.1f} µs")
    print(f"ratio parse+map / baseline: {overall / baseline_median:.1f}x")
    verdict = "within" if overall < TARGET_MEDIAN_US else "OVER"
    print(f"target: median under {TARGET_MEDIAN_US:.0f} µs -> {verdict} ({overall:.1f} µs)")


def profile(repeats: int) -> None:
    """Print the functions where parse + map spends its time (cProfile, cumulative)."""
    functions = _parse_and_map_functions()
    corpus = build_corpus()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        for message in corpus:
            functions[message.config](message.text)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    """Parse the command line and run the benchmark (or the profile)."""
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    arguments.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="Timings per message.")
    arguments.add_argument("--profile", action="store_true", help="Profile with cProfile instead of timing.")
    options = arguments.parse_args()
    logging.getLogger("verifiers").setLevel(logging.ERROR)  # its warning about a 'think' field is expected here
    if options.profile:
        profile(options.repeats)
    else:
        run(options.repeats)


if __name__ == "__main__":
    main()
