"""ComfyUI workflows for tests, in the API format ComfyUI's "Export (API)" writes."""

from __future__ import annotations

import json
from typing import Any

CHECKPOINT = "sd_xl_base_1.0.safetensors"


def img2img_workflow(
    prompt_text: str = "{{prompt}}, masterpiece, best quality",
    *,
    checkpoint: str = CHECKPOINT,
    padding_nodes: int = 0,
) -> dict[str, Any]:
    """An SDXL img2img graph as exported: the photo is encoded, re-sampled at 0.55 denoise and
    both previewed and saved (the preview comes first: the saved image is the one to take).

    ``padding_nodes``: extra (unconnected) prompt nodes, ~330 bytes each, for the size of a
    large real workflow.
    """
    workflow: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "10": {"class_type": "LoadImage", "inputs": {"image": "example.png", "upload": "image"}},
        "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt_text, "clip": ["4", 1]}},
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "blurry, deformed, watermark", "clip": ["4", 1]},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 156680208700286,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 0.55,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["11", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "12": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "photochanger", "images": ["8", 0]},
        },
    }
    for index in range(padding_nodes):
        workflow[str(1000 + index)] = {
            "class_type": "CLIPTextEncode",
            "inputs": {
                "text": f"style variant {index}: " + "cinematic light, " * 16,
                "clip": ["4", 1],
            },
            "_meta": {"title": f"CLIP Text Encode (variant {index})"},
        }
    return workflow


def size_of(workflow: dict[str, Any]) -> int:
    return len(json.dumps(workflow).encode())
