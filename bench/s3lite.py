"""A small S3 client for the benchmark's clean-up: list, delete and abort under a prefix.

Python standard library only (urllib's http.client and AWS Signature Version 4), so the
benchmark needs nothing from PyPI and no network beyond the S3 endpoint. Path-style
addressing (what Garage wants). Used by bench/compare.py to remove what each server
wrote under its own prefix of the bucket, and to count what is left there.

    s3 = S3.from_env()                      # AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...
    n = s3.delete_prefix("berth-test", "bench-berth-20250101-120000/")
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import os
import urllib.parse
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _quote(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


class S3Error(Exception):
    pass


class S3:
    def __init__(self, endpoint, region, access_key, secret_key):
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise S3Error("endpoint %r: want http(s)://host[:port]" % endpoint)
        self.scheme, self.host = u.scheme, u.netloc
        self.region, self.access_key, self.secret_key = region, access_key, secret_key

    @classmethod
    def from_env(cls, env=None):
        env = os.environ if env is None else env
        missing = [k for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not env.get(k)]
        if missing:
            raise S3Error("missing %s in the environment" % ", ".join(missing))
        return cls(env["AWS_ENDPOINT_URL"], env.get("AWS_REGION") or "us-east-1",
                   env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])

    def _conn(self):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, timeout=120)
        return http.client.HTTPConnection(self.host, timeout=120)

    def request(self, method, bucket, key="", query=None, body=b"", headers=None):
        """One signed request; returns (status, headers dict with lower-case names, body)."""
        query = query or {}
        path = "/" + _quote(bucket) + ("/" + _quote(key, safe="-_.~/") if key else "")
        qs = "&".join("%s=%s" % (_quote(k), _quote(v)) for k, v in sorted(query.items()))
        t = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        hdrs = {"host": self.host, "x-amz-date": amz_date, "x-amz-content-sha256": payload}
        for k, v in (headers or {}).items():
            hdrs[k.lower()] = v
        names = sorted(hdrs)
        canonical = "\n".join([method, path, qs, "".join("%s:%s\n" % (k, str(hdrs[k]).strip()) for k in names),
                               ";".join(names), payload])
        scope = "%s/%s/s3/aws4_request" % (day, self.region)
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key_ = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key_ = hmac.new(key_, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(key_, to_sign.encode(), hashlib.sha256).hexdigest()
        hdrs["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
            self.access_key, scope, ";".join(names), sig)
        del hdrs["host"]
        c = self._conn()
        try:
            c.request(method, path + ("?" + qs if qs else ""), body=body or None, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def _xml(self, method, bucket, query, what, body=b"", headers=None, ok=(200,)):
        st, _, data = self.request(method, bucket, query=query, body=body, headers=headers)
        if st not in ok:
            raise S3Error("%s: %d %s" % (what, st, data[:300].decode("utf-8", "replace")))
        return ET.fromstring(data) if data else None

    def list_keys(self, bucket, prefix):
        """Every object key under `prefix`, with its size: yields (key, size)."""
        token = None
        while True:
            q = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                q["continuation-token"] = token
            root = self._xml("GET", bucket, q, "ListObjectsV2 %s/%s" % (bucket, prefix))
            for c in root.findall(NS + "Contents"):
                yield c.findtext(NS + "Key"), int(c.findtext(NS + "Size") or 0)
            if (root.findtext(NS + "IsTruncated") or "").lower() != "true":
                return
            token = root.findtext(NS + "NextContinuationToken")
            if not token:
                return

    def count(self, bucket, prefix):
        """(objects, bytes) under `prefix`."""
        n = size = 0
        for _, s in self.list_keys(bucket, prefix):
            n += 1
            size += s
        return n, size

    def delete_keys(self, bucket, keys):
        """DeleteObjects, 1,000 keys a request. Returns how many were deleted."""
        done = 0
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            body = ("<Delete><Quiet>true</Quiet>%s</Delete>" % "".join(
                "<Object><Key>%s</Key></Object>" % escape(k) for k in batch)).encode()
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            root = self._xml("POST", bucket, {"delete": ""}, "DeleteObjects", body,
                             {"content-md5": md5, "content-type": "application/xml"})
            errs = root.findall(NS + "Error") if root is not None else []
            if errs:
                raise S3Error("DeleteObjects: %d errors, first %s %s" % (
                    len(errs), errs[0].findtext(NS + "Key"), errs[0].findtext(NS + "Code")))
            done += len(batch)
        return done

    def abort_uploads(self, bucket, prefix):
        """Aborts the multipart uploads in progress under `prefix`; returns how many."""
        n, key_marker, id_marker = 0, None, None
        while True:
            q = {"uploads": "", "prefix": prefix}
            if key_marker:
                q["key-marker"] = key_marker
            if id_marker:
                q["upload-id-marker"] = id_marker
            root = self._xml("GET", bucket, q, "ListMultipartUploads %s/%s" % (bucket, prefix))
            for u in root.findall(NS + "Upload"):
                st, _, data = self.request("DELETE", bucket, u.findtext(NS + "Key"),
                                           {"uploadId": u.findtext(NS + "UploadId")})
                if st not in (204, 200, 404):
                    raise S3Error("AbortMultipartUpload: %d %r" % (st, data[:200]))
                n += 1
            if (root.findtext(NS + "IsTruncated") or "").lower() != "true":
                return n
            key_marker = root.findtext(NS + "NextKeyMarker")
            id_marker = root.findtext(NS + "NextUploadIdMarker")
            if not key_marker:
                return n

    def delete_prefix(self, bucket, prefix):
        """Everything under `prefix` (which should end with "/"): multipart uploads
        aborted, objects deleted. Returns (objects deleted, uploads aborted)."""
        if not prefix.strip("/"):
            raise S3Error("refusing to delete a whole bucket")
        aborted = self.abort_uploads(bucket, prefix)
        deleted = 0
        while True:
            keys = [k for k, _ in self.list_keys(bucket, prefix)]
            if not keys:
                return deleted, aborted
            deleted += self.delete_keys(bucket, keys)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 4 or sys.argv[1] not in ("count", "delete"):
        sys.exit("usage: s3lite.py count|delete BUCKET PREFIX/   (endpoint and keys from AWS_*)")
    s3 = S3.from_env()
    if sys.argv[1] == "count":
        print("%d objects, %d bytes" % s3.count(sys.argv[2], sys.argv[3]))
    else:
        print("%d objects deleted, %d multipart uploads aborted" % s3.delete_prefix(sys.argv[2], sys.argv[3]))
