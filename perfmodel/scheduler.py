"""Continuous batching with chunked prefill (vLLM's V1 scheduler, SGLang's), in closed form for uniform requests.

All N requests (I prompt tokens, O output tokens each) are queued at once. Every step the engine runs one forward of
at most T tokens (`max_prefill_tokens`: vLLM's max_num_batched_tokens, SGLang's chunked_prefill_size): first one
decode token for every running request past its prompt, then prompt chunks — the rest of a partly prefilled request,
then new requests while fewer than C run (C = `max_num_seqs` and the KV budget at full length). A request's first
token comes with the step that finishes its prompt; it then needs O − 1 decode steps, and its slot goes to the next
waiting request. tests/perfmodel/scheduler_reference.py steps through exactly this policy.

Slots. Each of the C slots serves requests k, k + C, k + 2C, ...: m_k = ceil((N − k) / C) of them. A request holds
its slot for G = q + O − 1 steps, q = ceil(I / T') prefill steps, where T' = T − d is the budget left after the
steady d = C(O − 1)/G decodes. Slot k's first request starts after the prompts before it, floor(k · I / T') steps
in; the run ends when the busiest slot is done: steps = max over k of floor(k·I/T') + m_k·G, attained at the last
slot of the fuller group or at the last slot (two candidates, in closed form).
Budget. Where T/(I + O − 1) requests per step is less than the slots' C/G, every prompt and decode token passes
through forwards of at most T tokens, and the requests still running after the last prompt finish in O − 1 more
steps: steps = (N(I + O − 1) − r(O − 1)²/2) / T + O − 1, r = T/(I + O − 1) (they are spread evenly over their
decodes); then not every slot is busy, and this count replaces the slots'. Against the reference the step count is exact or one off over the regimes tested
(slot-bound and budget-bound, short and long prompts, N below, near and far above C).

Time. The steps are costed at their mean composition: N(O − 1)/S decode tokens at the mean context I + O/2, N·I/S
prompt tokens (their causal attention: N/S prompts' worth per step), N/S first tokens sampled — one forward each.
TTFT of request j (slot k = j mod C, turn g = j // C): (floor(k·I/T') + g·G + q) steps, and where the budget binds
(j + 1)(I + O − 1)/T; mean in closed form, p50/p99 by nearest rank. TPOT = the mean step.
"""

from __future__ import annotations

import numpy as np

from perfmodel.cuda_graphs import graph_batch
from perfmodel.occupancy import decode_attention_occupancy
from perfmodel.operators import decode_attention, dense_ops, prefill_attention
from perfmodel.roofline import communication_time, forward_times, roofline


def continuous_steps(n_requests, input_len, output_len, max_running, step_tokens):
    """(steps, steps per request in a slot G, prefill steps q, steps per admitted prompt I/T') of the run."""
    n, i, o, c, t = (np.asarray(x, dtype=np.float64) for x in (n_requests, input_len, output_len, max_running,
                                                               step_tokens))  # fmt: skip
    c = np.minimum(c, n)
    q = np.ones_like(i * c)
    for _ in range(3):  # q and the budget left after the steady decodes depend on each other; three passes settle
        g = q + o - 1
        budget_left = np.maximum(t - c * (o - 1) / g, 1.0)
        q = np.maximum(np.ceil(i / budget_left), 1.0)
    g = q + o - 1
    per_prompt = i / budget_left
    turns = np.ceil(n / c)  # requests of the fullest slots
    fuller = n - (turns - 1) * c  # how many slots serve `turns` requests
    slot_steps = np.maximum(np.floor((fuller - 1) * per_prompt) + turns * g,
                            np.floor((c - 1) * per_prompt) + (turns - 1) * g)  # fmt: skip
    # Budget-bound (fewer tokens per step than the slots could use): the prompts and the decodes before the last
    # prompt go through at T per step; the requests still running then (r(O − 1) of them, r = T/(I + O − 1) per
    # step, spread evenly over their decodes) finish in the last O − 1 steps.
    rate = t / (i + o - 1)
    budget_steps = (n * (i + o - 1) - rate * (o - 1) ** 2 / 2) / t + (o - 1)
    budget_bound = rate < c / g
    return np.where(budget_bound, budget_steps, slot_steps), g, q, per_prompt


def paged_steps(n_requests, input_len, output_len, max_num_seqs, step_tokens, kv_tokens, block_tokens):
    """(steps, G, q, I/T', concurrency) of the run where KV blocks are allocated as tokens are computed and the
    newest running request is preempted (recomputed later) when they run out: vLLM's paged KV cache. Where the KV
    holds every request admitted at full length the slot schedule of `continuous_steps` applies unchanged.

    Otherwise the KV, not the slots, sets the pace. Staggered requests hold I + (O − 1)/2 tokens on average (plus
    half a block), so the KV keeps S = kv_tokens / (I + (O − 1)/2 + block/2) of them running, and the run takes
    about N·G/min(C, S) steps, plus the run-down: after the last admission the KV empties as the requests still
    running finish, which wastes w·G steps, w = 1 − (I·O/2 + O²/3) / ((I + O/2)·O) (KV use falls from full as the
    requests spread evenly over their decodes leave; G from the slot schedule of min(C, S) requests, which gives q,
    I/T' and the TTFT too). That is bounded below by the schedule as if the KV held all min(C, N) requests the cap
    admits, and above by the schedule of full-length reservation (F = kv_tokens /
    (I + O) slots, what an engine that reserves each request's full length runs; preemption never does worse, and
    never runs fewer than F). Against the reference (tests/perfmodel/scheduler_reference.py) over prompts of 64-2048
    tokens, outputs of 128-2048, 1.1 to 8 times the requests the KV holds at full length: median 4%, max 18% (18%:
    prompts much longer than the output, where the preempted requests re-enter together and the run keeps
    full-length waves). The preempted requests' recomputation (a prefill of their prompt and output so far) is not
    costed."""
    n, i, o, cap, kv = (np.asarray(x, dtype=np.float64) for x in (n_requests, input_len, output_len, max_num_seqs,
                                                                   kv_tokens))  # fmt: skip
    block = np.asarray(block_tokens, dtype=np.float64)
    slots = np.minimum(cap, n)
    full = np.maximum(np.floor(kv / (i + o)), 1.0)  # requests the KV holds at full length (as estimate() counts them)
    steady = kv / (i + (o - 1) / 2 + block / 2)  # staggered requests the KV holds
    fits = full >= slots
    running = np.where(fits, slots, np.clip(np.floor(steady), full, slots))
    by_running = continuous_steps(n, i, o, running, step_tokens)  # the slot schedule of that many: G, q, I/T'
    by_slots = continuous_steps(n, i, o, slots, step_tokens)  # as if the KV held every request the cap admits
    by_full = continuous_steps(n, i, o, np.minimum(slots, full), step_tokens)
    g = by_running[1]
    rundown = 1 - (i * o / 2 + o * o / 3) / ((i + o / 2) * o)
    kv_paced = n * g / np.maximum(np.minimum(cap, steady), 1.0) + rundown * g
    steps = np.where(fits, by_running[0], np.minimum(by_full[0], np.maximum(by_slots[0], kv_paced)))
    return steps, g, by_running[2], by_running[3], running


def engine_schedule(n_requests, input_len, output_len, step_tokens, *, full_length_slots, max_num_seqs, kv_tokens,
                    block_tokens, paged):  # fmt: skip
    """The schedule a continuous-batching engine runs, as `estimate()` costs it where requests stagger: (steps, G, q,
    I/T', running, staggered); where they go in lockstep turns (not `staggered`: a turn's prompts fit one step)
    `estimate()` costs static waves, whose step count is the same. `full_length_slots`: the requests that run at once
    with their full length reserved (the KV's and the engine's cap, max_num_seqs, where it is set; 0 = none); `paged`
    (vLLM): where more requests are queued than that and the KV, not the cap, is why, KV blocks are taken as tokens
    are computed and `paged_steps` applies."""
    n = np.asarray(n_requests, dtype=np.float64)
    slots = np.asarray(full_length_slots, dtype=np.float64)
    concurrency = np.maximum(np.minimum(n, slots), 1.0)
    schedule = continuous_steps(n, input_len, output_len, concurrency, step_tokens)
    staggered = schedule[3] * (concurrency - 1) >= 1
    running = concurrency
    if paged:
        cap = np.where(np.asarray(max_num_seqs) > 0, max_num_seqs, n)
        kv_bound = (n > slots) & (slots < np.minimum(cap, n))  # more queued than fit at full length, for want of KV
        if np.any(kv_bound):
            *by_blocks, paged_running = paged_steps(n, input_len, output_len, cap, step_tokens, kv_tokens,
                                                    block_tokens)  # fmt: skip
            schedule = tuple(np.where(kv_bound, b, s) for b, s in zip(by_blocks, schedule, strict=True))
            running = np.where(kv_bound, np.maximum(paged_running, 1.0), concurrency)
            staggered = staggered | kv_bound
    return (*schedule, running, staggered)


def _turns(n_requests, max_running):
    """(n, C, turns, F, mean turn): N requests in turns of C = min(max_running, N) slots, the last turn's F fuller
    slots serving one request more, and the mean over requests of their turn index (slot k's requests have turns
    0..m_k − 1)."""
    n = np.asarray(n_requests, dtype=np.float64)
    c = np.minimum(np.asarray(max_running, dtype=np.float64), n)
    turns = np.ceil(n / c)
    fuller = n - (turns - 1) * c
    mean_turn = (fuller * turns * (turns - 1) / 2 + (c - fuller) * (turns - 1) * (turns - 2) / 2) / n
    return n, c, turns, fuller, mean_turn


def _budget_bound(input_len, output_len, step_tokens, c, g):
    """(steps per request's tokens at the budget, (I + O − 1)/T; whether the budget, not the slots, sets the pace)."""
    tokens_per_request = (np.asarray(input_len) + np.asarray(output_len) - 1) / np.asarray(step_tokens)
    return tokens_per_request, 1 / tokens_per_request < c / g


def continuous_ttft_steps(n_requests, input_len, output_len, max_running, step_tokens, g, q, per_prompt,
                          quantiles=(0.5, 0.99)):  # fmt: skip
    """Mean and nearest-rank quantiles of TTFT in steps: request j waits floor(k·I/T') + (j // C)·G steps for its
    slot, then q prefill steps; where the budget binds, its prompt finishes at (j + 1)(I + O − 1)/T steps
    (the tokens of the requests before it)."""
    n, c, turns, fuller, mean_turn = _turns(n_requests, max_running)
    tokens_per_request, budget_bound = _budget_bound(input_len, output_len, step_tokens, c, g)
    # Σ over requests of the slot start: each slot k < fuller serves `turns` requests, the others turns − 1.
    mean_start = (_floor_ramp_sum(fuller, per_prompt) * turns
                  + (_floor_ramp_sum(c, per_prompt) - _floor_ramp_sum(fuller, per_prompt)) * (turns - 1)) / n  # fmt: skip
    mean = mean_start + g * mean_turn + q
    out = [np.where(budget_bound, (n + 1) / 2 * tokens_per_request + 0.5, mean)]
    for quantile in quantiles:
        j = np.maximum(np.ceil(quantile * n) - 1, 0)
        by_slot = np.floor(np.mod(j, c) * per_prompt) + np.floor(j / c) * g + q
        out.append(np.where(budget_bound, np.ceil((j + 1) * tokens_per_request), by_slot))
    return out


def continuous_ttft_s(n_requests, input_len, output_len, max_running, step_tokens, g, q, per_prompt, *, idle_step_s,
                      decode_token_s, prompt_token_s, quantiles=(0.5, 0.99)):  # fmt: skip
    """Mean and nearest-rank quantiles of TTFT in seconds. A request's first token comes at the end of the step that
    finishes its prompt, after every step before it; each step costs `idle_step_s` (weights, fixed costs) plus each
    decode token it carries (`decode_token_s`) and each prompt token (`prompt_token_s`).

    Prompts: they go through in chunks of the budget T' left after the decodes, so the step that finishes request j's
    prompt has finished min(s·T', the turn's prompts) of its turn's prompt tokens (s: the turn's steps so far), on
    top of every earlier turn's. Decodes: while the first turn is admitted they ramp up from none (a request decodes
    from the step after its prompt: Σ over its first s steps of (u − q + 1)/(I/T') = m(m + 1)/(2·I/T'), m = s − q),
    then run at the slots' steady C·(O − 1)/G (a short last turn thins the run's mean, not what waiting requests see).
    Where the budget binds, every step is full: request j's step has carried the prompts
    up to its own, and decodes in the rest of the budget. Costing the steps before a first token at the run's mean
    step instead (decode-only steps included) puts TTFT far below the prompt FLOPs ahead of a request."""
    i = np.asarray(input_len, dtype=np.float64)
    a = np.asarray(per_prompt, dtype=np.float64)
    n, c, _, _, mean_turn = _turns(n_requests, max_running)
    _, budget_bound = _budget_bound(input_len, output_len, step_tokens, c, g)
    steps_mean, *steps_quantiles = continuous_ttft_steps(n, input_len, output_len, max_running, step_tokens, g, q,
                                                          per_prompt, quantiles)  # fmt: skip
    ramp_steps = np.floor((c - 1) * a) + q  # the first turn's admission: its last prompt's first token
    steady_decodes = c * (np.asarray(output_len) - 1) / g

    def ramp(m):  # decode tokens over a first-turn request's steps before its first token, m = s − q
        return m * (m + 1) / (2 * a)

    def decodes_before(s):
        return np.where(s <= ramp_steps, ramp(np.maximum(s - q, 0)),
                        ramp(ramp_steps - q) + steady_decodes * (s - ramp_steps))  # fmt: skip

    def budget_ttft_s(s, prompts):
        return (
            s * idle_step_s
            + prompts * i * prompt_token_s
            + np.maximum(s * step_tokens - prompts * i, 0) * decode_token_s
        )

    # Slots: the first turn's c requests (m = floor(k·I/T'), its spread taken as uniform) and the later ones.
    first_m = _floor_ramp_sum(c, a) / c
    first_decodes = (first_m**2 + a**2 * (c**2 - 1) / 12 + first_m) / (2 * a)  # E[m²] = mean² + variance
    later = np.maximum(n - c, 1)
    later_steps = (n * steps_mean - c * (first_m + q)) / later
    decodes_mean = (c * first_decodes + (n - c) * decodes_before(np.maximum(later_steps, ramp_steps))) / n
    # prompts done by a first token: the first turn's, then the later requests' (all earlier turns, and their own
    # turn's up to the step; `in_turn`: the mean steps from a turn's start to the first token)
    later_in_turn = (n * (steps_mean - g * mean_turn) - c * (first_m + q)) / later
    later_prompts = n * mean_turn / later * c + np.minimum(later_in_turn / a, c)
    prompts_mean = np.minimum(n, (c * np.minimum((first_m + q) / a, c) + (n - c) * later_prompts) / n)
    slot_mean = steps_mean * idle_step_s + decodes_mean * decode_token_s + prompts_mean * i * prompt_token_s
    out = [np.where(budget_bound, budget_ttft_s(steps_mean, (n + 1) / 2), slot_mean)]
    for quantile, steps_j in zip(quantiles, steps_quantiles, strict=True):
        j = np.maximum(np.ceil(quantile * n) - 1, 0)
        turn = np.floor(j / c)
        prompts_j = np.maximum(np.minimum(n, turn * c + np.minimum((steps_j - turn * g) / a, c)), j + 1)
        slot_j = steps_j * idle_step_s + decodes_before(steps_j) * decode_token_s + prompts_j * i * prompt_token_s
        out.append(np.where(budget_bound, budget_ttft_s(steps_j, j + 1), slot_j))
    return out


def _floor_ramp_sum(count, per_prompt):
    """Σ_{k < count} floor(k · a), a = per_prompt = A + f (A its integer part): A·count(count − 1)/2 exactly, plus
    Σ floor(k·f) = Σ_{v=1}^{V} (count − ceil(v/f)), V = floor(f(count − 1)), with ceil(v/f) taken as v/f + 1/2."""
    count = np.asarray(count, dtype=np.float64)
    a = np.asarray(per_prompt, dtype=np.float64)
    whole, frac = np.floor(a), a - np.floor(a)
    top = np.floor(frac * np.maximum(count - 1, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = np.where(frac > 0, top * count - top * (top + 1) / (2 * frac) - top / 2, 0.0)
    return whole * count * (count - 1) / 2 + np.maximum(rest, 0.0)


def prompt_steps(n_requests, max_running, q, per_prompt, steps):
    """Steps that carry prompt tokens: a turn's admissions keep the stagger of the first turn (slot k at floor(k·I/T')
    steps in), so each full turn has floor((C − 1)·I/T') + q of them, the last (fuller slots) floor((F − 1)·I/T') + q;
    the other steps only decode."""
    _, c, turns, fuller, _ = _turns(n_requests, max_running)
    per_turn = np.floor((c - 1) * per_prompt) + q
    return np.minimum(steps, (turns - 1) * per_turn + np.floor((fuller - 1) * per_prompt) + q)


def _step(shape, decodes, prompts, input_len, output_len, running, gpu, cal, peak_flops_per_s, kv_dtype_bytes, tp):
    """One forward with `decodes` decode tokens (mean context I + O/2) and `prompts` whole prompts' worth of prompt
    tokens: (time, per-op times split into the prompts' share and the decodes' share, compute-bound time,
    occupancy)."""
    prompt_tokens = prompts * input_len
    tokens = decodes + prompt_tokens
    # A decode-only step replays the CUDA graph of the next captured batch size (perfmodel/cuda_graphs.py).
    graph_tokens = np.where(prompts > 0, tokens, graph_batch(decodes, cal.cuda_graph_max_batch))
    ops = dense_ops(shape, graph_tokens, decodes + prompts, cal.sampler_logit_passes)
    times, compute_s = forward_times(ops, gpu, cal, peak_flops_per_s)
    prompt_share = prompt_tokens / np.maximum(tokens, 1e-30)
    prefill_ops = {name: t * prompt_share for name, t in times.items()}
    decode_ops = {name: t - prefill_ops[name] for name, t in times.items()}
    prefill_attn, prefill_bound = roofline(prefill_attention(shape, prompts, input_len, kv_dtype_bytes), gpu, cal,
                                           peak_flops_per_s)  # fmt: skip
    prefill_ops["attention"] = np.where(prompts > 0, prefill_attn, 0.0)
    attn = decode_attention(shape, decodes, kv_dtype_bytes)
    occupancy = decode_attention_occupancy(np.maximum(running, 1), shape.n_kv_head, input_len + output_len,
                                           gpu.sm_count)  # fmt: skip
    compute_eff, memory_eff = cal.efficiencies("attention_decode")
    context = input_len + output_len / 2  # the decodes' mean KV length
    attn_compute_s = attn.flops_per_kv * context / (peak_flops_per_s * compute_eff)
    attn_memory_s = (attn.bytes_per_kv * context + attn.bytes_fixed) / (gpu.hbm_bandwidth_bytes_per_s * memory_eff
                                                                       * occupancy)  # fmt: skip
    decode_ops["attention"] = np.maximum(attn_compute_s, attn_memory_s) + attn.kernels * cal.kernel_launch_overhead_s
    communication = communication_time(shape, tokens, decodes + prompts, tp, gpu, cal)
    prefill_ops["communication"] = communication * prompt_share
    decode_ops["communication"] = communication * (1 - prompt_share)
    step_s = sum(prefill_ops.values()) + sum(decode_ops.values()) + cal.step_overhead_s
    compute_s = (compute_s + np.where(prefill_bound & (prompts > 0), prefill_ops["attention"], 0.0)
                 + np.where(attn_compute_s >= attn_memory_s, decode_ops["attention"], 0.0))  # fmt: skip
    return step_s, prefill_ops, decode_ops, compute_s, occupancy, {name: op.op_class for name, op in ops.items()}


def continuous_run(shape, n_requests, max_running, input_len, output_len, gpu, cal, peak_flops_per_s, kv_dtype_bytes,
                   step_tokens, tp, schedule=None) -> dict:  # fmt: skip
    """Times of the whole run on one GPU (`shape`: its share of the model), as the static schedule's timing dict:
    total, TTFT (mean, p50, p99), TPOT (the mean step), the first turn's prompts ("prefill"), per-op times over all
    steps split into the prompts' share and the decodes' share, and bounds. Two kinds of step are costed: those that
    carry prompts (all N·I prompt tokens spread over them) and the decode-only rest, both at the mean decode count.
    `schedule`: `continuous_steps` of the same arguments, where the caller has it already."""
    steps, g, q, per_prompt = schedule or continuous_steps(n_requests, input_len, output_len, max_running, step_tokens)
    running = np.minimum(max_running, n_requests)
    with_prompts = prompt_steps(n_requests, max_running, q, per_prompt, steps)
    decodes = n_requests * (output_len - 1) / steps  # mean decode tokens per step
    args = (input_len, output_len, running, gpu, cal, peak_flops_per_s, kv_dtype_bytes, tp)
    prompt_s, prompt_prefill, prompt_decode, prompt_compute, occupancy, op_classes = _step(
        shape, decodes, n_requests / with_prompts, *args
    )
    decode_s, decode_prefill, decode_decode, decode_compute, _, _ = _step(shape, decodes, 0.0 * decodes, *args)
    rest = steps - with_prompts
    total_s = with_prompts * prompt_s + rest * decode_s
    step_s = total_s / steps  # the mean step: TPOT, and the unit of the TTFT counts
    # What a first token waits for: the steps before it, each with its fixed costs (an empty step), its decodes and its
    # prompt tokens, costed at the slots' steady decodes (what waiting requests see; a short last turn thins only the
    # run's mean). While prompts wait, every step is full (T' prompt tokens beside the decodes): a prompt token costs
    # what it adds to such a step over a decode-only one.
    steady = running * (output_len - 1) / g
    idle_s = _step(shape, 0.0 * steady, 0.0 * steady, *args)[0]
    steady_s = _step(shape, steady, 0.0 * steady, *args)[0]
    decode_token_s = np.maximum(steady_s - idle_s, 0.0) / np.maximum(steady, 1e-30)
    full_prompts = np.minimum(1 / per_prompt, running)  # prompts' worth in a full step
    full_s = _step(shape, steady, full_prompts, *args)[0]
    prompt_token_s = np.maximum(full_s - steady_s, 0.0) / (full_prompts * input_len)
    ttft_steps = (n_requests, input_len, output_len, max_running, step_tokens, g, q, per_prompt)
    ttft_mean_s, ttft_p50_s, ttft_p99_s = (
        np.minimum(x, total_s)  # a first token never comes after the run's end
        for x in continuous_ttft_s(
            *ttft_steps, idle_step_s=idle_s, decode_token_s=decode_token_s, prompt_token_s=prompt_token_s
        )  # fmt: skip
    )
    # every request of the first turn has its token (where the budget binds, before the last step in any case): its
    # steps, and all its prompts
    first_turn_steps = np.minimum(np.floor((running - 1) * per_prompt) + q, steps)
    first_turn_s = np.minimum(
        first_turn_steps * idle_s
        + np.maximum(first_turn_steps - q, 0) * (first_turn_steps - q + 1) / (2 * per_prompt) * decode_token_s
        + running * input_len * prompt_token_s,
        total_s,
    )
    # Each phase's bound from its own steps: the prompts' from the steps that carry them, the decodes' from the rest.
    prefill_compute_bound = prompt_compute > (prompt_s - cal.step_overhead_s) / 2
    decode_compute_bound = decode_compute > (decode_s - cal.step_overhead_s) / 2
    # The fields of the static schedule's timing (perfmodel/estimator.py): "prefill" is the first turn's prompts.
    return {
        "total_s": total_s, "ttft_s": ttft_mean_s, "ttft_p50_s": ttft_p50_s, "ttft_p99_s": ttft_p99_s,
        "tpot_s": step_s, "prefill_s": first_turn_s, "decode_s": total_s - first_turn_s,
        "occupancy": occupancy, "prefill_compute_bound": prefill_compute_bound,
        "decode_compute_bound": decode_compute_bound,
        "prefill_ops": {k: with_prompts * v + rest * decode_prefill[k] for k, v in prompt_prefill.items()},
        "decode_ops": {k: with_prompts * v + rest * decode_decode[k] for k, v in prompt_decode.items()},
        "op_classes": op_classes | {"attention": "attention", "communication": "communication"},
    }  # fmt: skip
