"""The GPU campaign: every GPU figure in one resumable command. plan.py says what is to run and what is done,
run.py runs it on the GPU machine, collect.py files what came back into results/."""
