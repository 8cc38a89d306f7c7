"""Secrets as they reach the plugin, for the redaction tests."""

from __future__ import annotations

# In echoed errors, URLs and headers: each is (text, the secret in it).
SECRET_CORPUS: list[tuple[str, str]] = [
    ("Incorrect API key provided: sk-AbCdEf0123456789XyZ", "sk-AbCdEf0123456789XyZ"),
    ("key sk-proj-Ab12_Cd34-Ef56Gh78Ij90 was revoked", "sk-proj-Ab12_Cd34-Ef56Gh78Ij90"),
    ("x-api-key sk-ant-api03-Zz9Yy8Xx7Ww6-Vv5 invalid", "sk-ant-api03-Zz9Yy8Xx7Ww6-Vv5"),
    ("Access denied for key 0123456789abcdef0123456789ABCDEF.", "0123456789abcdef0123456789ABCDEF"),
    ("API key not valid: AIzaSyD-1234567890abcdefghijklmn", "AIzaSyD-1234567890abcdefghijklmn"),
    ("token ya29.a0AfH6SMBx-Example_Token.123 expired", "ya29.a0AfH6SMBx-Example_Token.123"),
    ("The security token AKIAIOSFODNN7EXAMPLE is invalid", "AKIAIOSFODNN7EXAMPLE"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl rejected",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl",
    ),
    ("GET https://admin:p@ss@word@host.test/v1 failed", "p@ss@word"),
    ("GET https://admin:p@ss@word@host.test/v1 failed", "ss@word"),
    ("connect to admin:hunter2pw@host.test/v1 refused", "hunter2pw"),
    ("POST /v1?api-key=abcd1234efgh&x=1", "abcd1234efgh"),
    ("blob.test/c?sv=2022&sig=Zm9vYmFyYmF6cXV4&se=2030", "Zm9vYmFyYmF6cXV4"),
    ("s3.test/o?X-Amz-Signature=deadbeefcafe0001&X-Amz-Date=1", "deadbeefcafe0001"),
    ("s3.test/o?X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE", "FwoGZXIvYXdzEXAMPLE"),
    ("oauth client_secret=s3cr3tValue99", "s3cr3tValue99"),
    ('{"apikey": "plainApiKeyValue"}', "plainApiKeyValue"),
]
