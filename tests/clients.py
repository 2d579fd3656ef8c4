"""Clients as a raw HTTP caller (or an attacker) speaks to the app: no gradio_client, no page."""
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def call(url, data, timeout=120, api="predict", headers=None):
    """/predict (or another api) as a raw HTTP client calls it: -> ("complete", value) or
    ("error", message)."""
    base = url + "gradio_api"
    req = urllib.request.Request(base + f"/call/{api}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        event = json.loads(urllib.request.urlopen(req, timeout=30).read())["event_id"]
    except urllib.error.HTTPError as e:  # refused at the door (the guard): its one line
        return "error", e.read().decode("utf-8", "replace")
    text = urllib.request.urlopen(f"{base}/call/{api}/{event}", timeout=timeout).read().decode()
    kind, payload = "none", None
    for block in text.split("\n\n"):  # the stream's last answer (a long call sends heartbeats first)
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if lines.get("event") in ("complete", "error"):
            kind, payload = lines["event"], json.loads(lines.get("data", "null"))
    if payload is None:
        return kind, None
    return kind, (payload["error"] if kind == "error" and isinstance(payload, dict) else
                  payload if kind == "error" else payload[0])


def upload(url, path, name=None) -> dict:
    """Gradio's own upload route -> the FileData that names the upload."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name or Path(path).name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    body = head + Path(path).read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "gradio_api/upload", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    (where,) = json.loads(urllib.request.urlopen(req, timeout=60).read())
    return {"path": where, "orig_name": name or Path(path).name, "meta": {"_type": "gradio.FileData"}}


def descendants(pid: int) -> int:
    """How many processes descend from ``pid`` (its decoders among them), from /proc."""
    parent = {}
    for d in Path("/proc").iterdir():
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            parent[int(d.name)] = int(fields[1])
        except (ValueError, OSError, IndexError):
            continue
    count, frontier = 0, {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier}
        count += len(frontier)
    return count




def memory_kb(pid: int) -> dict:
    """VmRSS and VmHWM (peak) of a process, KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


def status(url, path, method="GET", data=None, headers=None) -> int:
    """The HTTP status of one request (no exception for 4xx/5xx)."""
    import urllib.error

    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        return urllib.request.urlopen(req, timeout=60).status
    except urllib.error.HTTPError as e:
        return e.code
