#!/usr/bin/env python3
"""A tiny Hugging Face-style hub for the download tests (tests/abi/test_models_abi.cpp).

Serves ROOT/<org>/<name>/<file> as http://127.0.0.1:PORT/<org>/<name>/resolve/<revision>/<file>,
the way the hub does:
  - files over 1 KiB are "LFS" files: the resolve URL answers 302 to /cdn/... with X-Linked-Size and
    X-Linked-Etag (the sha256); smaller files are served directly with a git-style ETag;
  - HEAD and GET, Range requests (206 / 416);
  - repo "gated/*" needs "Authorization: Bearer test-token", else 401 (X-Error-Code: GatedRepo);
  - a file whose name holds "drop-once" is cut off midway (connection closed) on its first GET;
  - a file whose name holds "bad-etag" is announced with the sha256 of other bytes.
Writes the port it listens on to --port-file and one JSON line per request to --log.
"""
import argparse
import hashlib
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOCK = threading.Lock()
DROPPED = set()


def log(entry):
    with LOCK, open(ARGS.log, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.handle_request(head=True)

    def do_GET(self):
        self.handle_request(head=False)

    def fail(self, code, message, error_code=None):
        body = json.dumps({"error": message}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if error_code:
            self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", message)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_request(self, head):
        log({"method": self.command, "path": self.path, "range": self.headers.get("Range"),
             "auth": self.headers.get("Authorization")})
        cdn = self.path.startswith("/cdn/")
        m = re.match(r"^/cdn/([^/]+/[^/]+)/(.+)$", self.path) if cdn else \
            re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path)
        if not m:
            return self.fail(404, "Not Found")
        repo, file = (m.group(1), m.group(2)) if cdn else (m.group(1), m.group(3))
        if repo.startswith("gated/") and not cdn and \
                self.headers.get("Authorization") != "Bearer test-token":
            return self.fail(401, "Access to model %s is restricted. You must have access to it and be "
                                  "authenticated to access it. Please log in." % repo, "GatedRepo")
        path = os.path.join(ARGS.root, repo, file)
        if not os.path.isfile(path):
            return self.fail(404, "Entry not found", "EntryNotFound")
        data = open(path, "rb").read()
        sha = hashlib.sha256(data).hexdigest()
        if "bad-etag" in file:
            sha = hashlib.sha256(data + b"other bytes").hexdigest()
        lfs = len(data) > 1024
        if lfs and not cdn:
            self.send_response(302)
            self.send_header("Location", "/cdn/%s/%s" % (repo, file))
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("X-Linked-Etag", '"%s"' % sha)
            self.send_header("ETag", '"%s"' % sha)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end, status = 0, len(data), 200
        rng = self.headers.get("Range")
        if rng:
            r = re.match(r"^bytes=(\d+)-(\d*)$", rng)
            if not r:
                return self.fail(400, "bad range")
            start = int(r.group(1))
            if r.group(2):
                end = min(end, int(r.group(2)) + 1)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        if not lfs:
            self.send_header("ETag", '"%s"' % hashlib.sha1(data).hexdigest())
        self.end_headers()
        if head:
            return
        body = data[start:end]
        if "drop-once" in file and status == 200:
            with LOCK:
                first = file not in DROPPED
                DROPPED.add(file)
            if first:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
        self.wfile.write(body)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, ARGS.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
