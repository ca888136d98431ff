"""SDK interop check, run by scripts/interop/run.sh (which sets the
environment): the providers' official SDKs sign requests that a running
hookgate must accept once and then answer as duplicates; and the SDKs that
only verify must accept what `hookgate sign` produces.

Each check prints one line; any failure exits non-zero.
"""

import datetime
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

URL = os.environ["INTEROP_URL"]
BIN = os.environ["INTEROP_BIN"]
ROOT = os.environ["INTEROP_ROOT"]
PROVIDERS = os.path.join(ROOT, "providers")
FAILURES = []


def fixture(provider, name):
    with open(os.path.join(PROVIDERS, provider, "fixtures", name), "rb") as f:
        return f.read()


def post_with_headers(path, body, headers):
    req = urllib.request.Request(URL + path, data=body, method="POST")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def post(path, body, headers):
    status, text, _ = post_with_headers(path, body, headers)
    return status, text


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        FAILURES.append(name)


def accepted_then_duplicate(name, path, body, headers):
    """The SDK-signed request is accepted, and the same request again is a
    duplicate of the same delivery."""
    first = post(path, body, headers)
    second = post(path, body, headers)
    try:
        a, b = json.loads(first[1]), json.loads(second[1])
        ok = (
            first[0] == 200
            and a.get("status") == "accepted"
            and a.get("duplicate") is False
            and second[0] == 200
            and b.get("duplicate") is True
            and a.get("id") == b.get("id")
        )
    except ValueError:
        ok = False
    check(f"{name}: SDK-signed request accepted, resend is a duplicate", ok, f"{first} / {second}")


def hookgate_sign(provider, secret, body_file, url=None, content_type=None):
    args = [BIN, "sign", "--provider", provider, "--secret", secret, "--providers", PROVIDERS]
    if url:
        args += ["--url", url]
    if content_type:
        args += ["--content-type", content_type]
    out = subprocess.run(args + [body_file], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["headers"]


def now():
    return int(time.time())


# --- SDK signers -> the running gateway -------------------------------------

def stripe_sdk():
    import stripe

    body = fixture("stripe", "invoice.paid.json").decode()
    header = stripe.WebhookSignature.generate_signature_header(
        body, os.environ["INTEROP_STRIPE"], timestamp=now()
    )
    accepted_then_duplicate(
        "stripe (stripe-python WebhookSignature.generate_signature_header)",
        "/v1/webhooks/stripe",
        body.encode(),
        {"Content-Type": "application/json", "Stripe-Signature": header},
    )


def standard_webhooks_sdk():
    from standardwebhooks.webhooks import Webhook

    body = fixture("standard-webhooks", sorted(
        f for f in os.listdir(os.path.join(PROVIDERS, "standard-webhooks", "fixtures"))
        if f.endswith(".json") and not f.endswith((".expected.json", ".headers.json"))
    )[0])
    ts = datetime.datetime.now(tz=datetime.timezone.utc)
    msg_id = f"msg_interop_{now()}"
    sig = Webhook(os.environ["INTEROP_SW"]).sign(msg_id, ts, body)
    accepted_then_duplicate(
        "standard-webhooks (standardwebhooks Webhook.sign)",
        "/v1/webhooks/standard-webhooks",
        body,
        {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(ts.timestamp())),
            "webhook-signature": sig,
        },
    )
    # Svix signs the same way under svix-* headers.
    from svix.webhooks import Webhook as SvixWebhook

    svix_id = f"msg_svix_{now()}"
    sig = SvixWebhook(os.environ["INTEROP_SW"]).sign(svix_id, ts, body.decode())
    accepted_then_duplicate(
        "svix headers (svix Webhook.sign)",
        "/v1/webhooks/standard-webhooks",
        body,
        {
            "Content-Type": "application/json",
            "svix-id": svix_id,
            "svix-timestamp": str(int(ts.timestamp())),
            "svix-signature": sig,
        },
    )


def slack_sdk():
    from slack_sdk.signature import SignatureVerifier

    body = fixture("slack", "app_mention.json")
    ts = str(now())
    sig = SignatureVerifier(os.environ["INTEROP_SLACK"]).generate_signature(timestamp=ts, body=body)
    accepted_then_duplicate(
        "slack (slack_sdk SignatureVerifier.generate_signature)",
        "/v1/webhooks/slack",
        body,
        {
            "Content-Type": "application/json",
            "X-Slack-Signature": sig,
            "X-Slack-Request-Timestamp": ts,
        },
    )


def twilio_sdk():
    from twilio.request_validator import RequestValidator

    params = dict(urllib.parse.parse_qsl(fixture("twilio", "message_status.delivered.form").decode()))
    url = URL + "/v1/webhooks/twilio"
    sig = RequestValidator(os.environ["INTEROP_TWILIO"]).compute_signature(url, params)
    accepted_then_duplicate(
        "twilio (twilio RequestValidator.compute_signature)",
        "/v1/webhooks/twilio",
        urllib.parse.urlencode(params).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig},
    )


def braintree_sdk():
    import braintree

    public, private = os.environ["INTEROP_BRAINTREE"].split(":", 1)
    gateway = braintree.BraintreeGateway(
        braintree.Configuration(
            environment=braintree.Environment.Sandbox,
            merchant_id="interop",
            public_key=public,
            private_key=private,
        )
    )
    sample = gateway.webhook_testing.sample_notification(
        braintree.WebhookNotification.Kind.SubscriptionCanceled, f"sub_{now()}"
    )
    accepted_then_duplicate(
        "braintree (braintree webhook_testing.sample_notification)",
        "/v1/webhooks/braintree",
        urllib.parse.urlencode(sample).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    challenge = "20f9f8ed05f77439fe955c977e4c8a53"
    with urllib.request.urlopen(f"{URL}/v1/webhooks/braintree?bt_challenge={challenge}") as r:
        answer = r.read().decode()
    check(
        "braintree: bt_challenge answered as webhook_notification.verify computes it",
        answer == gateway.webhook_notification.verify(challenge),
        answer,
    )


def paddle_sdk():
    from paddle_billing.Notifications import PaddleSignature

    body = fixture("paddle", "customer.created.json")
    ts = now()
    mac = PaddleSignature.calculate_hmac(os.environ["INTEROP_PADDLE"], f"{ts}:".encode() + body)
    accepted_then_duplicate(
        "paddle (paddle-python-sdk PaddleSignature.calculate_hmac)",
        "/v1/webhooks/paddle",
        body,
        {"Content-Type": "application/json", "Paddle-Signature": f"ts={ts};h1={mac.hexdigest()}"},
    )


def github_octokit():
    modules = os.environ.get("INTEROP_NODE_MODULES")
    if not modules:
        check("github (@octokit/webhooks-methods sign)", False, "npm is not installed")
        return
    body = fixture("github", "ping.json")
    headers = json.loads(fixture("github", "ping.headers.json"))
    script = (
        "import { sign } from '" + modules + "/@octokit/webhooks-methods/dist-node/index.js';"
        "let data = ''; process.stdin.on('data', c => data += c);"
        "process.stdin.on('end', async () => console.log(await sign(process.env.INTEROP_GITHUB, data)));"
    )
    sig = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        input=body.decode(), check=True, capture_output=True, text=True,
    ).stdout.strip()
    headers.update({"Content-Type": "application/json", "X-Hub-Signature-256": sig})
    accepted_then_duplicate("github (@octokit/webhooks-methods sign)", "/v1/webhooks/github", body, headers)


def adyen_sdk():
    from Adyen.util import generate_notification_sig, is_valid_hmac_notification

    key = os.environ["INTEROP_ADYEN"]
    notification = json.loads(fixture("adyen", "AUTHORISATION.json"))
    item = notification["notificationItems"][0]["NotificationRequestItem"]
    item["additionalData"]["hmacSignature"] = generate_notification_sig(item, key).decode()
    check(
        "adyen: the SDK's own is_valid_hmac_notification accepts its signature",
        is_valid_hmac_notification(notification, key),
    )
    body = json.dumps(notification).encode()
    headers = {"Content-Type": "application/json"}
    # Adyen wants the body `[accepted]`, so the verdict and the delivery ids
    # are in headers; a resend names the same delivery (deduplicated).
    first = post_with_headers("/v1/webhooks/adyen", body, headers)
    second = post_with_headers("/v1/webhooks/adyen", body, headers)
    ids = [r[2].get("hookgate-delivery-ids") for r in (first, second)]
    check(
        "adyen (Adyen.util.generate_notification_sig): accepted with [accepted], "
        "resend is a duplicate of the same delivery",
        all(r[0] == 200 and r[1] == "[accepted]" for r in (first, second))
        and first[2].get("hookgate-status") == "accepted"
        and ids[0] is not None
        and ids[0].startswith("dlv_")
        and ids[0] == ids[1]
        and first[2].get("hookgate-duplicate") == "false"
        and second[2].get("hookgate-duplicate") == "true",
        f"{first[:2]} {ids[0]} / {second[:2]} {ids[1]}",
    )


# --- hookgate sign -> SDK verifiers ------------------------------------------

def verify_only_sdks():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        def write(name, data):
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                f.write(data)
            return path

        # Square: verify_signature(body, header, key, notification URL).
        from square.utils.webhooks_helper import verify_signature

        body = fixture("square", "payment.updated.completed.json")
        url = "https://hooks.example.com/v1/webhooks/square"
        h = hookgate_sign("square", "sq-interop-key", write("sq.json", body), url=url)
        check(
            "square: squareup verify_signature accepts hookgate sign",
            verify_signature(
                request_body=body.decode(),
                signature_header=h["x-square-hmacsha256-signature"],
                signature_key="sq-interop-key",
                notification_url=url,
            )
            and not verify_signature(
                request_body=body.decode(),
                signature_header=h["x-square-hmacsha256-signature"],
                signature_key="sq-interop-key",
                notification_url=url + "x",
            ),
        )

        # Razorpay: Utility.verify_webhook_signature raises on a mismatch.
        import razorpay

        body = fixture("razorpay", "payment.captured.json")
        h = hookgate_sign("razorpay", "rzp-interop", write("rzp.json", body))
        try:
            razorpay.Client(auth=("key", "secret")).utility.verify_webhook_signature(
                body.decode(), h["X-Razorpay-Signature"], "rzp-interop"
            )
            ok = True
        except Exception as e:  # noqa: BLE001 - the SDK's error is the verdict
            ok, detail = False, repr(e)
        check("razorpay: razorpay Utility.verify_webhook_signature accepts hookgate sign", ok)

        # GoCardless: webhooks.parse raises InvalidSignatureError on a mismatch.
        from gocardless_pro import webhooks

        body = fixture("gocardless", "payments.mixed.json")
        h = hookgate_sign("gocardless", "gc-interop", write("gc.json", body))
        events = webhooks.parse(body, "gc-interop", h["Webhook-Signature"])
        check("gocardless: gocardless_pro webhooks.parse accepts hookgate sign", len(events) > 0)

        # Discord: discord_interactions.verify_key with the public key.
        from discord_interactions import verify_key

        pair = (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        )
        body = fixture("discord", "application_command.json")
        h = hookgate_sign("discord", pair, write("dc.json", body))
        public = pair[64:]
        check(
            "discord: discord_interactions verify_key accepts hookgate sign",
            verify_key(body, h["X-Signature-Ed25519"], h["X-Signature-Timestamp"], public)
            and not verify_key(body + b" ", h["X-Signature-Ed25519"], h["X-Signature-Timestamp"], public),
        )

        # Stripe, Standard Webhooks, Slack, Twilio: their verifiers too.
        import stripe
        from standardwebhooks.webhooks import Webhook
        from slack_sdk.signature import SignatureVerifier
        from twilio.request_validator import RequestValidator

        body = fixture("stripe", "invoice.paid.json")
        h = hookgate_sign("stripe", "whsec_interop", write("st.json", body))
        try:
            stripe.WebhookSignature.verify_header(body.decode(), h["Stripe-Signature"], "whsec_interop", 300)
            ok = True
        except Exception:  # noqa: BLE001
            ok = False
        check("stripe: stripe-python verify_header accepts hookgate sign", ok)

        secret = os.environ["INTEROP_SW"]
        body = fixture("slack", "app_mention.json")
        h = hookgate_sign("standard-webhooks", secret, write("sw.json", body))
        try:
            Webhook(secret).verify(body, {k.lower(): v for k, v in h.items()})
            ok = True
        except Exception:  # noqa: BLE001
            ok = False
        check("standard-webhooks: standardwebhooks Webhook.verify accepts hookgate sign", ok)

        h = hookgate_sign("slack", "slack-interop", write("sl.json", body))
        check(
            "slack: slack_sdk SignatureVerifier.is_valid accepts hookgate sign",
            SignatureVerifier("slack-interop").is_valid(
                body=body, timestamp=h["X-Slack-Request-Timestamp"], signature=h["X-Slack-Signature"]
            ),
        )

        form = fixture("twilio", "message_status.delivered.form")
        url = "https://hooks.example.com/v1/webhooks/twilio"
        h = hookgate_sign(
            "twilio", "tw-interop", write("tw.form", form), url=url,
            content_type="application/x-www-form-urlencoded",
        )
        params = dict(urllib.parse.parse_qsl(form.decode()))
        check(
            "twilio: twilio RequestValidator.validate accepts hookgate sign",
            RequestValidator("tw-interop").validate(url, params, h["X-Twilio-Signature"]),
        )


def main():
    for step in (
        stripe_sdk,
        standard_webhooks_sdk,
        slack_sdk,
        twilio_sdk,
        braintree_sdk,
        paddle_sdk,
        github_octokit,
        adyen_sdk,
        verify_only_sdks,
    ):
        try:
            step()
        except Exception as e:  # noqa: BLE001 - report and go on
            check(step.__name__, False, repr(e))
    print(f"{len(FAILURES)} failure(s)")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
