"""An RL-sized sample (speed benchmark and agreement corpus)."""
import json
import os
import requests

API_URL = "https://api.example.com/v1/items"


def fetch_items(token, page=1):
    headers = {"Authorization": f"Bearer {token}"}
    response = requests.get(API_URL, headers=headers, params={"page": page})
    response.raise_for_status()
    data = response.json()
    with open(os.path.join("/tmp", "items.json"), "w") as fh:
        json.dump(data, fh)
    return data["items"]
