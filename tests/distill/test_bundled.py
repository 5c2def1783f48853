"""The shipped `theia-offline` student: a float16 official-layout asset (<= 20 MB) with a card, loaded upcast."""
import torch

from theia_eval.encoders import create_encoder, get_encoder_config
from theia_eval.encoders.theia_offline import ASSET


def test_theia_offline_asset_loads_upcast_with_card():
    from safetensors.torch import load_file

    weights = ASSET / "model.safetensors"
    assert weights.stat().st_size <= 20 * 2**20
    assert all(v.dtype == torch.float16 for v in load_file(weights).values())
    card = (ASSET / "CARD.md").read_text()
    assert "theia-eval distill teachers=offline student=nano" in card and "held-out cosine" in card
    assert get_encoder_config("theia-offline").offline
    images = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    enc = create_encoder("theia-offline")
    out = enc(images)
    assert out.tokens.shape == (2, 14, 14, 128) and out.tokens.dtype == torch.float32
    assert torch.isfinite(out.tokens).all()
    torch.testing.assert_close(out.tokens, create_encoder("theia", weights=str(ASSET))(images).tokens, rtol=0, atol=0)
    untrained = create_encoder("theia-offline", weights="random")(images).tokens
    assert not torch.allclose(out.tokens, untrained)
