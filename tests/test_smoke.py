def test_lot__issued__belongs_to_winery(cert, lot, winery):
    assert cert.ownerOf(lot.token(1)) == winery
    assert cert.balanceOf(winery) >= 10
