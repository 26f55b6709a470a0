"""The example's pages: start page, application form, confirmation, feedback."""

from __future__ import annotations

from html import escape

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import reverse

from perf_sdk.integrations.django import record_satisfaction

RATINGS = [(5, "Very satisfied"), (4, "Satisfied"), (3, "Neither"), (2, "Dissatisfied"), (1, "Very dissatisfied")]


def page(title: str, body: str, status: int = 200) -> HttpResponse:
    html = f"<!doctype html><html lang='en'><head><title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    return HttpResponse(html, status=status)


def csrf(request: HttpRequest) -> str:
    return f"<input type='hidden' name='csrfmiddlewaretoken' value='{get_token(request)}'>"


def application_form(request: HttpRequest, error: str = "") -> str:
    return (
        f"{error}<form method='post'>{csrf(request)}<label for='name'>Full name</label>"
        "<input id='name' name='name'><button>Submit application</button></form>"
    )


def feedback_form(request: HttpRequest, error: str = "") -> str:
    choices = "".join(
        f"<input type='radio' id='r{n}' name='rating' value='{n}'><label for='r{n}'>{label}</label>"
        for n, label in RATINGS
    )
    return (
        f"{error}<form method='post'>{csrf(request)}<fieldset><legend>Overall, how did you feel about the service "
        f"you received today?</legend>{choices}</fieldset><button>Send feedback</button></form>"
    )


def start_page(request: HttpRequest) -> HttpResponse:
    return page("Apply for a licence", f"<p>It takes 5 minutes.</p><a href='{reverse('apply')}'>Start now</a>")


def apply(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.POST.get("name", "").strip():
            return page(
                "Apply for a licence", application_form(request, "<p class='error'>Enter your full name</p>"), 422
            )
        return HttpResponseRedirect(reverse("confirmation"), status=303)
    return page("Apply for a licence", application_form(request))


def confirmation(request: HttpRequest) -> HttpResponse:
    return page(
        "Application complete",
        f"<p>We have your application.</p><a href='{reverse('feedback')}'>What did you think of this service?</a>",
    )


def feedback(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        rating = request.POST.get("rating", "")
        if rating not in {"1", "2", "3", "4", "5"}:
            return page("Give feedback", feedback_form(request, "<p class='error'>Choose a rating</p>"), 422)
        record_satisfaction(request, int(rating))
        return HttpResponseRedirect(reverse("thanks"), status=303)
    return page("Give feedback", feedback_form(request))


def thanks(request: HttpRequest) -> HttpResponse:
    return page("Thank you for your feedback", "")
