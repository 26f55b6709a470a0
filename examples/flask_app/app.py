"""Apply for a licence: a Flask service whose journey perf_sdk counts with no hand-written calls.

Run it against a local platform (`perf-sdk serve --token dev-token --port 8800` in another terminal):

    PERF_SDK_ENDPOINT=http://127.0.0.1:8800 PERF_SDK_TOKEN=dev-token PERF_SDK_SECRET=dev-secret-change-me-0123456789 flask --app examples/flask_app/app.py run

then open http://127.0.0.1:5000/. The journey: start page -> /apply (the form; a start is counted) ->
/apply/confirmation (a completion is counted; refreshing it counts nothing) -> /feedback (a rating,
tied to the transaction just completed). In production: gunicorn --chdir examples/flask_app 'app:create_app()'.
"""

from __future__ import annotations

from html import escape

from flask import Flask, redirect, request, url_for
from werkzeug.wrappers import Response

import perf_sdk
from perf_sdk import Journey
from perf_sdk.integrations.flask import init_app, record_satisfaction

SERVICE = "apply-for-a-licence"

#: Route names (Flask endpoints), so the counting follows the views even if their URLs change.
JOURNEYS = [Journey("apply-for-a-licence", start="route:apply", complete="route:confirmation")]


def page(title: str, body: str) -> str:
    return f"<!doctype html><html lang='en'><head><title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}</body></html>"


def create_app(tracker: perf_sdk.Tracker | None = None) -> Flask:
    """The application factory: ``tracker`` defaults to one configured by PERF_SDK_* variables."""
    app = Flask(__name__)
    init_app(app, tracker or perf_sdk.Tracker(service=SERVICE), journeys=JOURNEYS)

    @app.get("/")
    def start_page() -> str:
        return page("Apply for a licence", f"<p>It takes 5 minutes.</p><a href='{url_for('apply')}'>Start now</a>")

    @app.route("/apply", methods=["GET", "POST"])
    def apply() -> str | Response | tuple[str, int]:
        if request.method == "POST":
            name = request.form.get("name", "").strip()
            if not name:
                return page("Apply for a licence", "<p class='error'>Enter your full name</p>" + FORM), 422
            return redirect(url_for("confirmation"), code=303)
        return page("Apply for a licence", FORM)

    @app.get("/apply/confirmation")
    def confirmation() -> str:
        return page(
            "Application complete",
            f"<p>We have your application.</p><a href='{url_for('feedback')}'>What did you think of this service?</a>",
        )

    @app.route("/feedback", methods=["GET", "POST"])
    def feedback() -> str | Response | tuple[str, int]:
        if request.method == "POST":
            rating = request.form.get("rating", "")
            if rating not in {"1", "2", "3", "4", "5"}:
                return page("Give feedback", "<p class='error'>Choose a rating</p>" + FEEDBACK_FORM), 422
            record_satisfaction(int(rating))
            return redirect(url_for("thanks"), code=303)
        return page("Give feedback", FEEDBACK_FORM)

    @app.get("/feedback/thanks")
    def thanks() -> str:
        return page("Thank you for your feedback", "")

    return app


FORM = "<form method='post'><label for='name'>Full name</label><input id='name' name='name'><button>Submit application</button></form>"
FEEDBACK_FORM = (
    "<form method='post'><fieldset><legend>Overall, how did you feel about the service you received today?</legend>"
    + "".join(
        f"<input type='radio' id='r{n}' name='rating' value='{n}'><label for='r{n}'>{label}</label>"
        for n, label in [
            (5, "Very satisfied"),
            (4, "Satisfied"),
            (3, "Neither"),
            (2, "Dissatisfied"),
            (1, "Very dissatisfied"),
        ]
    )
    + "</fieldset><button>Send feedback</button></form>"
)
