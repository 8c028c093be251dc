"""Summarises a py-spy speedscope profile: the functions with the most samples, inclusive and
self. `python -m bench.profile bench-results/<run>/profile-app-c16.speedscope.json [N]`"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def _label(frame: dict) -> str:
    where = frame.get("file", "").split("site-packages/")[-1].replace(str(Path.cwd()) + "/", "")
    return f"{frame['name']} ({where}:{frame.get('line', '')})"


def summarise(path: Path, top: int = 40) -> str:
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        for sample, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            labels = [_label(frames[i]) for i in sample]
            for label in set(labels):
                inclusive[label] += weight
            if labels:
                own[labels[-1]] += weight
    lines = [f"{path.name}: {total:.1f} s sampled"]
    lines += [f"{w / total:6.1%}  {label}" for label, w in inclusive.most_common(top) if "process " not in label]
    lines.append("--- self")
    lines += [f"{w / total:6.1%}  {label}" for label, w in own.most_common(top // 2)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40))
