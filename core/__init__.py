"""The shared homes every other InfiMed package builds on: the task vocabulary, prompts and answer scoring, the one
config parser, the LLM endpoint config and clients, the dataset loader, the batched generation path, checkpoint
composition and the parameter-group table (docs/architecture.md). Nothing here imports another InfiMed package except
`infimed.modeling`/`infimed.processing`, where a model or processor is built.
"""
