"""A stand-in chain-of-thought teacher for the demo: an OpenAI-compatible server that knows the demo data's answers.

`infimed synthesize-cot` asks a strong vision-language model (Qwen2.5-VL-72B behind vLLM, say) to write reasoning
traces. The demo runs offline with a ~1M-parameter model that cannot write one, so `make demo` starts this server in
a thread instead and points the same `openai` client at it (`core/endpoints.py`, `core/llm_client.py`): the request,
the response, the cache and the rejection sampling are the real ones; only the writer of the traces is scripted.

How it answers a `/v1/chat/completions` request:

- It finds the sample: the `Question:` line of the teacher text plus a digest of each image's pixels (the client sends
  images re-encoded as PNG data URLs; pixels survive that, bytes need not) index the demo data it was given. An
  unknown sample gets HTTP 404, which the synthesis counts as `teacher_error`.
- It writes a short trace from the sample's gold answer (the finding the demo renderer drew): the `general` style
  states the finding ("<think>Seen: medium.</think><answer>B</answer>"); the `reflective` style adds a
  re-examination step ("Seen: present. Wait, check: present."). Both use the `<think>...</think><answer>...</answer>`
  layout, in traces of 20-40 tokens that a ~1M-parameter model can learn in a demo's minutes.
- Like a real teacher it makes mistakes, drawn from a generator seeded by the request (question, images, style and
  the client's `seed`, i.e. the candidate index), so reruns give the same candidates: a share of `wrong_answer`
  traces (a consistent trace that ends on another answer), `broken_format` traces (an unclosed `<think>`, no
  `<answer>` tag, or text after the answer) and, in the reflective style, `no_reflection` traces (a plain trace with
  no re-examination step). Rejection sampling then has something real to reject: `wrong_answer`, `bad_format`,
  `not_reflective`.

Run it by hand to try `recipes/cot/demo.yaml` (its `teacher.base_url` points at port 8765):

    python -m infimed.data.demo_teacher --data demo-output/demo-data --port 8765

This is not a model and teaches nothing the demo data does not hold: it stands in for one so the InfiMed-RL chain
(CoT synthesis -> SFT on the traces -> GRPO) runs end to end on a laptop. See docs/demo.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import random
import re
import threading
from dataclasses import dataclass

from infimed.core.loopback_server import JSONRequestHandler, LoopbackServer
from infimed.core.tasks import QuestionKind, option_letter

__all__ = ["DEFAULT_ERROR_RATES", "DemoTeacher", "TeacherAnswer", "image_digest", "main", "write_trace"]

# Shares of flawed candidates (our choice): with 2 candidates per style, about 1 sample in 6 gets no kept general
# trace and every rejection reason is counted, while most samples still get one.
DEFAULT_ERROR_RATES = {"wrong_answer": 0.2, "broken_format": 0.15, "no_reflection": 0.2}
_QUESTION_LINE = re.compile(r"^Question:\s*(.*?)\s*$", re.MULTILINE)
_OPTION_LINE = re.compile(r"^[A-Z]\. (.*?)\s*$", re.MULTILINE)
# Wrong open answers: the other value of the same finding (the demo's open answers are these words).
_OPEN_ALTERNATIVES = (("left", "right"), ("upper", "lower"), ("bright", "dark"))


@dataclass(frozen=True)
class TeacherAnswer:
    """What the teacher knows of one sample: its kind, gold answer and options."""

    kind: str
    answer: str
    options: tuple[str, ...] = ()


def image_digest(image) -> str:
    """A digest of an image's pixels (PIL image, PNG/JPEG bytes or a datasets `{"bytes": ...}` dict).

    The image is converted as `core.llm_client.image_part` converts it before sending (modes other than RGB and L
    become RGB), so a stored image and the one the client sent give the same digest.
    """
    from PIL import Image

    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    elif isinstance(image, str):
        image = Image.open(image)
    pil = image if image.mode in ("RGB", "L") else image.convert("RGB")
    return hashlib.sha256(f"{pil.mode}:{pil.size}:".encode() + pil.tobytes()).hexdigest()


def _key(question: str, options, digests: list[str]) -> str:
    # Options belong to the key: the text-only questions repeat with their options in another order.
    return json.dumps([question.strip(), [str(o).strip() for o in options or ()], digests])


def _finding(kind: str, answer: str, options: tuple[str, ...]) -> str:
    """The finding a trace states: short, because the demo model reads and writes about two characters a token."""
    if kind == QuestionKind.YES_NO:
        return "present" if answer == "yes" else "absent"
    if kind == QuestionKind.MULTIPLE_CHOICE and options:
        index = ord(answer.upper()) - ord("A")
        if 0 <= index < len(options):
            # the option's text only: a letter inside the trace ("C, medium" or "medium, so C") collapsed to one
            # letter for every held-out question in the demo model (measured), and GRPO then made the answer follow it
            return options[index].lower()
    return answer


def _wrong(kind: str, answer: str, options: tuple[str, ...], rng: random.Random) -> str:
    if kind == QuestionKind.YES_NO:
        return "no" if answer == "yes" else "yes"
    if kind == QuestionKind.MULTIPLE_CHOICE and len(options) > 1:
        return rng.choice([option_letter(i) for i in range(len(options)) if option_letter(i) != answer.upper()])
    for pair in _OPEN_ALTERNATIVES:
        if answer.lower() in pair:
            return pair[1 - pair.index(answer.lower())]
    return "unclear"


def write_trace(known: TeacherAnswer, style: str, rng: random.Random, error_rates: dict[str, float]) -> tuple[str, str]:
    """One candidate trace and its flaw (`"none"`, `"wrong_answer"`, `"broken_format"` or `"no_reflection"`).

    >>> rates = {"wrong_answer": 0.0, "broken_format": 0.0, "no_reflection": 0.0}
    >>> write_trace(TeacherAnswer("yes_no", "yes"), "reflective", random.Random(0), rates)[0]
    '<think>Seen: present. Wait, check: present.</think><answer>yes</answer>'
    >>> write_trace(TeacherAnswer("multiple_choice", "B", ("Small", "Large")), "general", random.Random(0), rates)[0]
    '<think>Seen: large.</think><answer>B</answer>'
    """
    draw = rng.random()
    flaw = "none"
    answer = known.answer
    if draw < error_rates["wrong_answer"]:
        flaw, answer = "wrong_answer", _wrong(known.kind, known.answer, known.options, rng)
    elif draw < error_rates["wrong_answer"] + error_rates["broken_format"]:
        flaw = "broken_format"
    elif style == "reflective" and draw < sum(error_rates.values()):
        flaw = "no_reflection"
    finding = _finding(known.kind, answer, known.options)
    # Traces of ~20-40 tokens: the tiny demo model learns this layout in a few hundred steps; the paper's teacher
    # writes hundreds of tokens. "Wait, check" is the re-examination step `cot_prompts.reflection_step` looks for.
    think = f"Seen: {finding}."
    if style == "reflective" and flaw != "no_reflection":
        think += f" Wait, check: {finding}."
    if flaw == "broken_format":
        return rng.choice([
            f"<think>{think}<answer>{answer}</answer>",  # the think block is never closed
            f"<think>{think}</think> The answer is {answer}.",  # no answer tag
            f"<think>{think}</think><answer>{answer}</answer> I hope this helps.",  # text after the answer
        ]), flaw
    return f"<think>{think}</think><answer>{answer}</answer>", flaw


def _request_parts(request: dict) -> tuple[str, list[str]]:
    """The teacher text and the data-URL images of a request's last user turn."""
    texts, images = [], []
    for message in request.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        texts, images = [], []
        for part in parts:
            if part.get("type") == "text":
                texts.append(part.get("text") or "")
            elif part.get("type") == "image_url":
                images.append(part["image_url"]["url"])
    return "\n".join(texts), images


class DemoTeacher(LoopbackServer):
    """Serve traces for ``dataset`` (demo schema: `question`, `answer`, `kind`, `options`, `images`) on 127.0.0.1.

        with DemoTeacher(load_from_disk("demo-output/demo-data")["train"]) as teacher:
            client = OpenAIChatClient(teacher.base_url, "demo-teacher")

    ``port=0`` picks a free port. ``served`` counts the candidates written, by flaw.
    """

    model_name = "infimed-demo-teacher"

    def __init__(self, dataset, port: int = 0, error_rates: dict[str, float] | None = None):
        rates = {**DEFAULT_ERROR_RATES, **(error_rates or {})}
        if any(not 0 <= rate <= 1 for rate in rates.values()) or sum(rates.values()) > 1:
            raise ValueError(f"`error_rates` must be shares in [0, 1] summing to at most 1, got {rates}.")
        self.error_rates = rates
        self.index = self._build_index(dataset)
        self.served: dict[str, int] = {}
        self._lock = threading.Lock()
        super().__init__(_Handler, port)

    @staticmethod
    def _build_index(dataset) -> dict[str, TeacherAnswer]:
        if "images" in dataset.column_names:
            import datasets

            dataset = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))
        index = {}
        for row in dataset:
            if not str(row.get("answer") or "").strip() or row.get("corrupted"):
                continue
            digests = [image_digest(image) for image in row.get("images") or []]
            index[_key(row["question"], row.get("options"), digests)] = TeacherAnswer(
                row["kind"], str(row["answer"]).strip(), tuple(row.get("options") or ()))
        return index

    def answer(self, request: dict) -> tuple[int, str]:
        """(HTTP status, assistant text or error message) for one chat-completions request body."""
        text, urls = _request_parts(request)
        question = _QUESTION_LINE.search(text)
        if question is None:
            return 400, "the request has no 'Question:' line (expected a synthesize-cot teacher prompt)"
        digests = [image_digest(base64.b64decode(url.split(",", 1)[1])) for url in urls]
        after = text[question.end():]
        options = _OPTION_LINE.findall(after.split("Options:", 1)[1]) if "Options:" in after else []
        known = self.index.get(_key(question.group(1), options, digests))
        if known is None:
            return 404, f"unknown sample: question {question.group(1)!r} with {len(digests)} image(s)"
        style = "reflective" if "reflect" in text.split("Question:", 1)[0].lower() else "general"
        seed = hashlib.sha256(json.dumps([text, digests, request.get("seed")]).encode()).hexdigest()
        trace, flaw = write_trace(known, style, random.Random(seed), self.error_rates)
        with self._lock:
            self.served[flaw] = self.served.get(flaw, 0) + 1
        return 200, trace



class _Handler(JSONRequestHandler):
    owner: DemoTeacher

    def do_POST(self):  # noqa: N802 - http.server naming
        if not self.path.endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": f"unknown path {self.path}; POST /v1/chat/completions"}})
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError:
            self.send_json(400, {"error": {"message": "the body is not JSON"}})
            return
        status, text = self.owner.answer(request)
        if status != 200:
            self.send_json(status, {"error": {"message": text}})
            return
        self.send_json(200, {
            "object": "chat.completion", "model": request.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        })


def main(argv: list[str] | None = None) -> int:
    import datasets

    parser = argparse.ArgumentParser(prog="python -m infimed.data.demo_teacher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="demo-output/demo-data", help="`infimed demo-data` output folder.")
    parser.add_argument("--split", default="train", help="Split whose samples the teacher knows.")
    parser.add_argument("--port", type=int, default=8765, help="Port on 127.0.0.1 (0: a free one).")
    args = parser.parse_args(argv)
    loaded = datasets.load_from_disk(args.data)
    teacher = DemoTeacher(loaded[args.split] if isinstance(loaded, datasets.DatasetDict) else loaded, port=args.port)
    print(f"Demo teacher ({len(teacher.index)} samples) at {teacher.base_url}; Ctrl-C stops it.", flush=True)
    try:
        teacher.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
