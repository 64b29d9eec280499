"""An RL-sized sample (speed benchmark and agreement corpus)."""
from flask import Flask, request, jsonify

app = Flask(__name__)
items = {}


@app.route("/items/<name>", methods=["GET", "POST"])
def item(name):
    if request.method == "POST":
        items[name] = request.get_json()
        return jsonify(ok=True)
    try:
        return jsonify(items[name])
    except KeyError:
        return jsonify(error="not found"), 404


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000, debug=True)
