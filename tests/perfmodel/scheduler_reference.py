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
