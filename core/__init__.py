"""The ground floor every other InfiMed package builds on: the task vocabulary, the one config parser, the one LLM
endpoint client, the one dataset loader and the one batched generation path. Nothing here imports another InfiMed
package except `infimed.modeling`/`infimed.processing` where a model is needed.
"""
