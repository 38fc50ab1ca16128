"""Parameter forms from the SDK's task description (loupe_tasks_json, as the binding returns it).

No task or parameter is named here: a task's inputs say what the docker gathers from the document
(image: a layer; mask: the selection; region: the selection's bounds; text: the prompt box) and
its params say which widget each parameter gets. Plain Python (no Krita, no Qt).
"""
import math

KINDS = {"int": "int", "float": "float", "string": "text", "bool": "bool", "choice": "choice"}


def offered(tasks):
    """The tasks a model offers that run on a model (runtime tasks such as the self-test are not)."""
    return [t for t in tasks if not t.get("runtime")]


def grouped(tasks):
    """[(group title, [task, ...])] in the description's order."""
    out = []
    for t in tasks:
        g = (t.get("group") or "").capitalize()
        if not out or out[-1][0] != g:
            out.append((g, []))
        out[-1][1].append(t)
    return out


def decimals_for(p):
    """Decimals a float parameter needs to show its step, default and minimum exactly (the editor's rule)."""
    step, default, low = p.get("step") or 0, p.get("default") or 0, p.get("min") or 0
    for d in range(7):
        f = 10.0 ** d

        def whole(x):
            return abs(x * f - round(x * f)) < 1e-6 * max(1.0, abs(x * f))
        if (step <= 0 or whole(step)) and whole(default) and whole(low):
            return d if step > 0 else max(d, 2)
    return 6


def field(p):
    """One widget's spec: name, kind (int, float, text, bool, choice), label, help (with the unit),
    default, min, max, step, decimals, choices, advanced."""
    kind = KINDS.get(p.get("type"), "text")
    help_text = p.get("help") or ""
    if p.get("unit"):
        help_text = "%s (%s)" % (help_text, p["unit"]) if help_text else p["unit"]
    f = {"name": p["name"], "kind": kind, "label": p.get("label") or p["name"], "help": help_text,
         "unit": p.get("unit") or "", "advanced": bool(p.get("advanced")), "default": p.get("default")}
    if kind in ("int", "float"):
        low = p.get("min", -math.inf)
        high = p.get("max", math.inf)
        f["min"] = low if low is not None else -math.inf
        f["max"] = high if high is not None else math.inf
        f["step"] = p.get("step") or (1 if kind == "int" else 0.1)
        if kind == "int":
            f["default"] = int(f["default"] or 0)
        else:
            f["default"] = float(f["default"] or 0.0)
            f["decimals"] = decimals_for(p)
    elif kind == "bool":
        f["default"] = bool(f["default"])
    elif kind == "choice":
        f["choices"] = list(p.get("choices") or [])
        if f["default"] not in f["choices"] and f["choices"]:
            f["default"] = f["choices"][0]
    else:
        f["default"] = "" if f["default"] is None else str(f["default"])
    return f


def form(task):
    """The task's form: {"text": {key, label, help} or None, "fields": [field, ...] (basic first,
    then advanced, each in the description's order)}."""
    fields = [field(p) for p in task.get("params", [])]
    return {"text": task.get("text"),
            "fields": [f for f in fields if not f["advanced"]] + [f for f in fields if f["advanced"]]}


def coerce(f, value):
    """A widget's value as its parameter's type (clamped to the described range)."""
    kind = f["kind"]
    if kind == "int":
        v = int(round(float(value)))
        return int(min(max(v, f["min"]), f["max"]))
    if kind == "float":
        return float(min(max(float(value), f["min"]), f["max"]))
    if kind == "bool":
        return bool(value)
    if kind == "choice":
        value = str(value)
        if value not in f["choices"]:
            raise ValueError("%s: '%s' is not one of %s" % (f["label"], value, ", ".join(f["choices"])))
        return value
    return str(value)


def collect(task, values, text=None):
    """The request's parameters from the form's values {name: value}: only those that differ from
    the model's defaults (the rest stay the SDK's), the text under the task's text key."""
    out = {}
    for f in form(task)["fields"]:
        if f["name"] not in values:
            continue
        v = coerce(f, values[f["name"]])
        if v != f["default"]:
            out[f["name"]] = v
    t = task.get("text")
    if t and text is not None:
        out[t["key"]] = text
    return out


def gather(task, has_selection):
    """What the run takes from the document, from the task's inputs: {"image", "mask", "region",
    "text"} booleans, and "problem": a sentence when a required input cannot be had (else None)."""
    inputs, required = set(task.get("inputs", [])), set(task.get("required", []))
    g = {k: k in inputs for k in ("image", "mask", "region")}
    g["text"] = bool(task.get("text"))
    g["problem"] = None
    for k in ("mask", "region"):
        if k in required and not has_selection:
            g["problem"] = ("%s needs a selection (its %s): select the area first"
                            % (task.get("label") or task["name"], "mask" if k == "mask" else "region"))
    return g
