"""A plain HTTP client of ``scorer serve`` with `requests`: TF Serving's predict format and the Open Inference
Protocol v2 infer format.  Nothing from this project is imported.

    python examples/rest_client.py --url http://127.0.0.1:8501 "a wonderful film" "a dull, boring plot"
"""

from __future__ import annotations

import argparse
import json

import requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8501")
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("texts", nargs="+")
    args = parser.parse_args()

    # TF Serving REST, row format: one prediction object per instance.
    r = requests.post(f"{args.url}/v1/models/{args.model}:predict", json={"instances": args.texts}, timeout=30)
    r.raise_for_status()
    for text_index, prediction in enumerate(r.json()["predictions"]):
        print(json.dumps({"protocol": "tf-serving", "index": text_index, **prediction}))

    # Open Inference Protocol v2: a BYTES tensor in, FP32 "score" and BYTES "label" tensors out.
    body = {
        "id": "example",
        "inputs": [{"name": "text", "shape": [len(args.texts)], "datatype": "BYTES", "data": args.texts}],
    }
    r = requests.post(f"{args.url}/v2/models/{args.model}/infer", json=body, timeout=30)
    r.raise_for_status()
    outputs = {o["name"]: o["data"] for o in r.json()["outputs"]}
    for text_index, (score, label) in enumerate(zip(outputs["score"], outputs["label"], strict=True)):
        print(json.dumps({"protocol": "oip-v2", "index": text_index, "score": score, "label": label}))


if __name__ == "__main__":
    main()
