"""Checks that each hopper consumer loop runs its softmax beside its own P V GEMM, in the SASS.

For each steady-state loop of the hopper kernel (a ``WARPGROUP.DEPBAR.LE gsb0, 0x1``, the wait
for S, followed by a ``WARPGROUP.DEPBAR.LE gsb0, 0x0``, the wait for O += P V), counts the
``MUFU.EX2`` between the two waits (the softmax overlapped with P V) and after the second one
(the softmax serialised behind it). Exits 1 when some loop has exponentials only after it.

    cuobjdump -sass libbaracuda.so | python3 benchmarks/sass_overlap.py
"""

import re
import sys

FUNCTION = re.compile(r"\s*Function : (\S+)")
INSTRUCTION = re.compile(r"\s+/\*[0-9a-f]+\*/\s+(.*?);")


def loops(instructions):
    """(exponentials between the waits, exponentials after) of each loop."""
    for start, text in enumerate(instructions):
        if "DEPBAR.LE gsb0, 0x1" not in text:
            continue
        between = after = 0
        end = start + 1
        while end < len(instructions) and "DEPBAR.LE gsb0, 0x0" not in instructions[end]:
            between += "MUFU.EX2" in instructions[end]
            end += 1
        for text_after in instructions[end + 1 :]:
            if "HGMMA" in text_after or "BAR.SYNC" in text_after:
                break
            after += "MUFU.EX2" in text_after
        yield between, after


def main():
    functions = {}
    name = None
    for line in sys.stdin:
        match = FUNCTION.match(line)
        if match:
            name = match.group(1)
            functions[name] = []
        elif name is not None and (match := INSTRUCTION.match(line)):
            functions[name].append(match.group(1))
    serialised = 0
    for name, instructions in functions.items():
        if "flash_sdpa_hopper_kernel" not in name:
            continue
        for between, after in loops(instructions):
            serialised += between == 0 and after > 0
            print(f"{name[-60:]}: {between} exponentials beside P V, {after} after it")
    return 1 if serialised else 0


if __name__ == "__main__":
    sys.exit(main())
