"""Number formatting shared by the viewer's tables, charts and graph labels."""


def human_flops(n) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}FLOPs"
    return f"{n} FLOPs"


def commas(n) -> str:
    return "n/a" if n is None else f"{n:,}"
