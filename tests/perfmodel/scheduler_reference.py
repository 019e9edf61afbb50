"""The continuous-batching scheduler stepped through request by request (a reference for perfmodel/scheduler.py).

The policy of vLLM's V1 scheduler (and SGLang's with chunked prefill) for uniform requests all queued at once: each
step has a budget of `step_tokens` tokens; running requests past their prompt decode one token each, a running
request still in its prompt gets the next chunk, then waiting requests are admitted (while fewer than `max_running`
run) with a chunk of what budget is left. The step that finishes a prompt yields its first token; a request leaves
after `output_len` tokens.
"""


def step_through(n_requests, input_len, output_len, max_running, step_tokens):
    """Per step: (decode tokens, prompt tokens, first tokens, Σ context of the decodes); and each request's first
    token step (1-based, in admission order)."""
    waiting, running, finished = n_requests, [], 0
    steps, first_token_step = [], []
    while finished < n_requests:
        budget, decodes, prompt, firsts, context = step_tokens, 0, 0, 0, 0
        for request in running:  # [prompt tokens done, tokens generated, id]
            if request[0] == input_len:
                budget -= 1
                decodes += 1
                context += input_len + request[1]
                request[1] += 1
        for request in running:
            if request[0] < input_len and budget > 0:
                chunk = min(input_len - request[0], budget)
                budget -= chunk
                prompt += chunk
                request[0] += chunk
                if request[0] == input_len:
                    request[1], firsts = 1, firsts + 1
                    first_token_step[request[2]] = len(steps) + 1
        while waiting and len(running) < max_running and budget > 0:
            chunk = min(input_len, budget)
            budget -= chunk
            prompt += chunk
            waiting -= 1
            request = [chunk, 0, len(first_token_step)]
            first_token_step.append(None)
            if chunk == input_len:
                request[1], firsts = 1, firsts + 1
                first_token_step[request[2]] = len(steps) + 1
            running.append(request)
        steps.append((decodes, prompt, firsts, context))
        finished += sum(1 for r in running if r[0] == input_len and r[1] >= output_len)
        running = [r for r in running if not (r[0] == input_len and r[1] >= output_len)]
    return steps, first_token_step


def step_through_paged(n_requests, input_len, output_len, max_running, step_tokens, kv_tokens, block_tokens):
    """The same policy over a paged KV cache of `kv_tokens` tokens in blocks of `block_tokens` (vLLM V1,
    vllm/v1/core/sched/scheduler.py): a request holds the blocks of the tokens computed so far, taken as it computes
    them. Running requests go first, oldest first; where one cannot get its next block the newest running request
    is preempted (its blocks freed, its computed tokens dropped) and goes back to the head of the queue, to recompute
    its prompt and the output so far as one prompt. A waiting request is admitted only if the blocks for its chunk
    are free and nothing was preempted in the step. Returns (steps, preemptions)."""
    blocks = kv_tokens // block_tokens
    waiting = [(input_len, 0) for _ in range(n_requests)]  # (tokens to compute as a prompt, tokens generated)
    running = []  # [prompt tokens, computed tokens, generated tokens]
    used, steps, preemptions, finished = 0, 0, 0, 0

    def held(tokens):
        return -(-tokens // block_tokens)

    while finished < n_requests:
        budget, preempted, scheduled = step_tokens, False, []
        for request in list(running):
            if budget == 0:
                break
            if not any(r is request for r in running):  # preempted earlier in this step
                continue
            prompt, computed, _ = request
            tokens = 1 if computed >= prompt else min(prompt - computed, budget)
            while held(computed + tokens) - held(computed) > blocks - used:
                victim = running.pop()
                used -= held(victim[1])
                waiting.insert(0, (input_len + victim[2], victim[2]))
                preempted, preemptions = True, preemptions + 1
                if victim is request:
                    break
            if not any(r is request for r in running):
                continue
            used += held(computed + tokens) - held(computed)
            request[1] += tokens
            budget -= tokens
            scheduled.append(request)
        while not preempted and waiting and len(running) < max_running and budget > 0:
            prompt, generated = waiting[0]
            chunk = min(prompt, budget)
            if held(chunk) > blocks - used:
                break
            waiting.pop(0)
            used += held(chunk)
            budget -= chunk
            running.append([prompt, chunk, generated])
            scheduled.append(running[-1])
        for request in scheduled:
            if request[1] >= request[0]:  # past its prompt: this step sampled a token
                request[2] += 1
        steps += 1
        done = [r for r in running if r[2] >= output_len]
        used -= sum(held(r[1]) for r in done)
        finished += len(done)
        running = [r for r in running if r[2] < output_len]
    return steps, preemptions
