"""Web frameworks: Flask debug, Jinja2/Mako templates, Markup, Django SQL and XSS."""
import flask
from flask import Flask, Markup as FMarkup
import jinja2
from jinja2 import Environment, select_autoescape
from mako.template import Template
import mako
import markupsafe
from markupsafe import Markup
from django.db.models.expressions import RawSQL
from django.utils.safestring import mark_safe, SafeText
from django.utils import safestring

app = Flask(__name__)
app.run(debug=True)
app.run(debug=False)
app.run(host="127.0.0.1",
        debug=True)
app.run()
other.run(debug=True)
run(debug=True)

jinja2.Environment()
jinja2.Environment(autoescape=False)
jinja2.Environment(autoescape=True)
Environment(loader=x, autoescape=select_autoescape(["html"]))
Environment(autoescape=jinja2.select_autoescape())
Environment(autoescape=some_flag)
Environment(autoescape=0)
Environment(loader=FileSystemLoader(x, autoescape=True))
jinja2.Template("x")

Template("hello ${name}")
mako.template.Template(text)
other.Template(text)

Markup(user_input)
Markup("<b>constant</b>")
Markup(None)
markupsafe.Markup(f"<b>{x}</b>")
FMarkup(value)
flask.Markup(value)
Markup()

Model.objects.extra(select={"a": "b"})
Model.objects.extra(select={"a": col})
Model.objects.extra(select={key: "b"})
Model.objects.extra(select=sel)
Model.objects.extra(where=["a = 1"])
Model.objects.extra(where=["a = %s" % a])
Model.objects.extra(where=clause)
Model.objects.extra(tables=["t"], where=["x"])
Model.objects.extra({"a": "b"}, ["c = 1"])
Model.objects.extra(None, None, None, [t])
Model.objects.extra(params=[user])
Model.objects.extra(select={**d})
qs.extra()
RawSQL("select 1", [])
RawSQL(sql, [])
RawSQL(sql="select %s" % x, params=[])
RawSQL(params=[])

mark_safe("<b>constant</b>")
mark_safe(user_input)
SafeText(value)
safestring.mark_safe(value)


def render(request, name):
    html = "<b>" + name + "</b>"
    return mark_safe(html)


def render2(request):
    html = "<b>static</b>"
    return mark_safe(html)


def render3(request):
    a = "x"
    b = "y"
    html = "{}{}".format(a, b)
    return mark_safe(html)


def render4(request):
    html = "{}".format(request.GET["x"])
    return mark_safe(html)


def render5(request, user):
    return mark_safe("<b>%s</b>" % "static")


def render6(request, user):
    return mark_safe("<b>%s</b>" % user)


def render7(request):
    html = "<i>"
    html += request.GET["x"]
    return mark_safe(html)


def render8(request):
    if request:
        html = "a"
    else:
        html = "b"
    return mark_safe(html)


def render9(request):
    if request:
        html = "a"
    else:
        html = request.body
    return mark_safe(html)


def render10(request):
    html, other = "a", "b"
    return mark_safe(html)


def render11(request):
    with open("f") as html:
        pass
    return mark_safe(html)


def render12(request):
    return mark_safe("{}".format(*["a", "b"]))


def render13(request):
    a = "x"
    b = a
    return mark_safe(b)


def render14(request):
    html = "x"
    return mark_safe(html, extra=1)


async def render15(request):
    return mark_safe(value)
