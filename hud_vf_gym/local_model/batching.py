"""Batched generation for the local model: concurrent requests share one forward pass per token.

A 135M model on a CPU is bound by reading its weights, not by arithmetic: one forward pass over four sequences
costs little more than over one. So concurrent rollouts should not queue for the model one reply at a time.
`BatchingGenerator` collects the requests that arrive within a few milliseconds of each other (or while a batch is
running), left-pads their prompts, and decodes them together with one key/value cache:

- **Per-request options**: every row keeps its own `max_new_tokens`, `temperature`, `top_p`, `stop` strings and
  seed. A seeded row draws from its own `torch.Generator`, seeded from (seed, prompt length) as the serial path
  always did, so its reply does not depend on which other requests shared its batch.
- **Finished rows leave the batch**: a row that wrote EOS, a stop string or its token limit is dropped from the
  cache, so a long reply does not keep short ones computing.
- **Greedy is greedy**: without sampling a row takes the arg-max; batching changes only the rounding of the matrix
  products (a float64 model gives identical tokens batched or alone; tested).

`decode` is the whole algorithm for one batch; `BatchingGenerator` only schedules. `max_batch_size=1` serialises
(one request at a time through the same code), which is the baseline bench/eval_speed.py measures against.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hud_vf_gym.local_model.prefix_cache import CachedPrefix, PrefixCache

__all__ = ["BatchingGenerator", "DecodeRequest", "DecodeResult", "decode", "row_seed"]

COLLECT_WINDOW_S = 0.005  # how long the first request of a batch waits for others to join it
IDLE_EXIT_S = 2.0  # an idle worker thread exits after this long; the next request starts a new one


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """One prompt (token ids) and how to continue it."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """The new token ids of one request and why it ended."""

    token_ids: tuple[int, ...]
    stopped: bool  # True: an EOS token or a stop string ended it; False: its token limit did


def row_seed(seed: int, prompt_length: int) -> int:
    """The generator seed of a seeded row: per conversation length, so each turn of a rollout draws fresh noise."""
    return hash((seed, prompt_length)) & 0xFFFF_FFFF


def decode(
    model: Any,
    requests: Sequence[DecodeRequest],
    *,
    pad_token_id: int,
    eos_token_ids: Sequence[int],
    text_of: Callable[[Sequence[int]], str],
    prefix_cache: PrefixCache | None = None,
) -> list[DecodeResult]:
    """Generate every request's continuation in one batch (see the module docs); call under `torch.inference_mode`.

    Args:
        model: a causal LM whose forward takes `cache=` (transformers 5).
        requests: the prompts and their options; every prompt needs at least one token.
        pad_token_id: written into left padding (masked out).
        eos_token_ids: tokens that end a reply (kept in its token ids, as `generate` keeps them).
        text_of: decodes token ids to text, for the stop strings.
        prefix_cache: earlier requests' keys and values: a prompt that continues one is read from where it ends,
            and every finished request is stored in it (None: every prompt is read in full).
    """
    import torch

    if not requests:
        return []
    device = next(model.parameters()).device
    prefixes = [prefix_cache.take(request.prompt_ids) if prefix_cache else None for request in requests]
    cache, mask, logits = _prefill(model, requests, prefixes, pad_token_id, device)
    next_position = mask.sum(-1, keepdim=True)  # the position of each row's next token
    generators = [_generator(request) for request in requests]
    stops = frozenset(eos_token_ids)
    outputs: list[list[int]] = [[] for _ in requests]
    results: list[DecodeResult | None] = [None] * len(requests)
    active = list(range(len(requests)))  # original row index of each cache row
    while active:
        tokens = [_choose(logits[index], requests[row], generators[row]) for index, row in enumerate(active)]
        keep = []
        for index, (row, token) in enumerate(zip(active, tokens, strict=True)):
            outputs[row].append(token)
            request = requests[row]
            if token in stops or _hits_stop(outputs[row], request.stop, text_of):
                results[row] = DecodeResult(tuple(outputs[row]), stopped=True)
            elif len(outputs[row]) >= request.max_new_tokens:
                results[row] = DecodeResult(tuple(outputs[row]), stopped=False)
            else:
                keep.append(index)
                continue
            if prefix_cache is not None:  # everything the model read for this row: its prompt and reply so far
                fed = (*request.prompt_ids, *outputs[row][:-1])
                prefix_cache.put(fed, _row_tensors(cache, mask, index))
        if not keep:
            break
        if len(keep) < len(active):  # finished rows leave the batch (and the cache)
            selected = torch.tensor(keep, device=device)
            cache.batch_select_indices(selected)
            mask, next_position = mask[selected], next_position[selected]
            tokens = [tokens[index] for index in keep]
            active = [active[index] for index in keep]
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], 1)
        step_ids = torch.tensor(tokens, dtype=torch.long, device=device).unsqueeze(1)
        logits = model(
            input_ids=step_ids, attention_mask=mask, position_ids=next_position, cache=cache, use_cache=True
        ).logits[:, -1, :]
        next_position = next_position + 1
    return [result if result is not None else DecodeResult((), stopped=False) for result in results]


def _prefill(
    model: Any,
    requests: Sequence[DecodeRequest],
    prefixes: Sequence[CachedPrefix | None],
    pad_token_id: int,
    device: Any,
) -> tuple[Any, Any, Any]:
    """Read every prompt (after its cached prefix) in one left-padded batch; return the cache, mask and logits.

    Cached prefixes are left-padded into the batch's cache as well, so each row's columns are: holes, its cached
    prefix, holes, the rest of its prompt. The attention mask marks the holes; positions count real tokens only.
    """
    import torch

    from hud_vf_gym.local_model.growing_cache import growing_cache

    cache = growing_cache(model.config)  # decoding steps write in place, not by copying the whole cache
    cached = [prefix.length if prefix else 0 for prefix in prefixes]
    cached_width = max(cached)
    rows = len(requests)
    mask_parts = []
    if cached_width:
        layers = next(prefix for prefix in prefixes if prefix is not None).layers
        for layer_index, (keys, values) in enumerate(layers):
            shape = (rows, keys.shape[1], cached_width, keys.shape[3])
            batch_keys = keys.new_zeros(shape)
            batch_values = values.new_zeros((rows, values.shape[1], cached_width, values.shape[3]))
            for row, prefix in enumerate(prefixes):
                if prefix is not None:
                    row_keys, row_values = prefix.layers[layer_index]
                    batch_keys[row, :, cached_width - prefix.length :] = row_keys[0, :, : prefix.length]
                    batch_values[row, :, cached_width - prefix.length :] = row_values[0, :, : prefix.length]
            cache.update(batch_keys, batch_values, layer_index)
        cached_mask = torch.zeros((rows, cached_width), dtype=torch.long, device=device)
        for row, length in enumerate(cached):
            if length:
                cached_mask[row, cached_width - length :] = 1
        mask_parts.append(cached_mask)
    suffixes = [request.prompt_ids[length:] for request, length in zip(requests, cached, strict=True)]
    width = max(len(suffix) for suffix in suffixes)
    ids = torch.full((rows, width), pad_token_id, dtype=torch.long, device=device)
    block_mask = torch.zeros((rows, width), dtype=torch.long, device=device)
    for row, suffix in enumerate(suffixes):
        ids[row, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
        block_mask[row, width - len(suffix) :] = 1
    mask = torch.cat([*mask_parts, block_mask], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, cached_width:]
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
    ).logits[:, -1, :]
    return cache, mask, logits


def _row_tensors(cache: Any, mask: Any, index: int) -> tuple[tuple[Any, Any], ...]:
    """One cache row's keys and values at its real (unmasked) positions, per layer: [1, heads, tokens, dim]."""
    columns = mask[index].nonzero().squeeze(-1)
    return tuple(
        (layer.keys[index : index + 1, :, columns].clone(), layer.values[index : index + 1, :, columns].clone())
        for layer in cache.layers
    )


def _generator(request: DecodeRequest) -> Any:
    if request.temperature <= 0 or request.seed is None:
        return None
    import torch

    return torch.Generator().manual_seed(row_seed(request.seed, len(request.prompt_ids)))


def _choose(logits: Any, request: DecodeRequest, generator: Any) -> int:
    """The next token of one row: arg-max when greedy, else a draw after temperature and nucleus (top_p) filtering."""
    import torch

    if request.temperature <= 0:
        return int(torch.argmax(logits).item())
    scores = logits.float() / request.temperature
    if request.top_p < 1.0:  # as transformers' TopPLogitsWarper: drop the least likely tokens outside top_p
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(-1).cumsum(-1)
        remove = cumulative <= (1 - request.top_p)
        remove[-1] = False  # always keep the most likely token
        scores = scores.scatter(0, order, ordered.masked_fill(remove, float("-inf")))
    probabilities = scores.softmax(-1)
    return int(torch.multinomial(probabilities, 1, generator=generator).item())


def _hits_stop(tokens: Sequence[int], stop: Sequence[str], text_of: Callable[[Sequence[int]], str]) -> bool:
    if not stop:
        return False
    text = text_of(tokens)
    return any(item in text for item in stop)


@dataclass
class _Pending:
    request: DecodeRequest
    future: concurrent.futures.Future[DecodeResult]


class BatchingGenerator:
    """A worker thread that runs `decode` on the requests submitted while it collects (see the module docs).

    Args:
        run_batch: decodes one batch (`decode` with the model bound); called in the worker thread only.
        max_batch_size: the most requests decoded together; 1 serialises.
        collect_window_s: how long the first request of a batch waits for others.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[DecodeRequest]], list[DecodeResult]],
        *,
        max_batch_size: int = 16,
        collect_window_s: float = COLLECT_WINDOW_S,
    ) -> None:
        """Keep the settings; a worker thread runs while there are requests and exits when idle."""
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.collect_window_s = collect_window_s
        self.batch_sizes: list[int] = []  # every batch decoded so far (for benches and tests)
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, request: DecodeRequest) -> concurrent.futures.Future[DecodeResult]:
        """Queue one request; the future holds its result (or the batch's exception)."""
        future: concurrent.futures.Future[DecodeResult] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the local model's generator is closed")
            self._queue.put(_Pending(request, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="hud-vf-gym-local-model", daemon=True)
                self._thread.start()
        return future

    def close(self) -> None:
        """Refuse new requests and wait for the worker to finish the ones already queued (it exits when idle)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join()

    def _work(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:  # `submit` starts a new worker if it finds none, so exit only with nothing queued
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            deadline = time.monotonic() + self.collect_window_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            self._run(batch)

    def _run(self, batch: list[_Pending]) -> None:
        pending = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not pending:
            return
        self.batch_sizes.append(len(pending))
        try:
            results = self.run_batch([item.request for item in pending])
        except Exception as exc:  # the batch boundary: every request of the batch gets the error
            for item in pending:
                item.future.set_exception(exc)
            return
        for item, result in zip(pending, results, strict=True):
            item.future.set_result(result)
