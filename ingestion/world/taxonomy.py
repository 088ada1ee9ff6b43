"""The synthetic world's category tree (L1 > L2 > L3) and the words titles are built from.

Names are real-sounding so that text embeddings of titles carry category meaning,
as product titles do in a real catalogue.
"""

from __future__ import annotations

# L1 -> L2 -> list of (L3 name, noun used in titles, typical price in USD)
TAXONOMY: dict[str, dict[str, list[tuple[str, str, float]]]] = {
    "Beauty": {
        "Skin Care": [
            ("Face Creams", "Face Cream", 24.0),
            ("Serums", "Vitamin C Serum", 29.0),
            ("Cleansers", "Foaming Cleanser", 12.0),
            ("Sunscreen", "Sunscreen SPF 50", 15.0),
        ],
        "Makeup": [
            ("Lipstick", "Matte Lipstick", 14.0),
            ("Foundation", "Liquid Foundation", 22.0),
            ("Mascara", "Volumizing Mascara", 11.0),
            ("Eyeshadow", "Eyeshadow Palette", 19.0),
        ],
        "Hair Care": [
            ("Shampoo", "Repair Shampoo", 9.0),
            ("Conditioner", "Moisture Conditioner", 9.0),
            ("Hair Oil", "Argan Hair Oil", 16.0),
            ("Hair Dryers", "Ionic Hair Dryer", 45.0),
        ],
        "Fragrance": [
            ("Perfume", "Eau de Parfum", 58.0),
            ("Cologne", "Eau de Toilette", 48.0),
            ("Body Mist", "Body Mist", 14.0),
            ("Fragrance Sets", "Fragrance Gift Set", 65.0),
        ],
    },
    "Electronics": {
        "Audio": [
            ("Headphones", "Wireless Headphones", 89.0),
            ("Earbuds", "Bluetooth Earbuds", 49.0),
            ("Speakers", "Portable Speaker", 59.0),
            ("Soundbars", "Soundbar", 149.0),
        ],
        "Phone Accessories": [
            ("Phone Cases", "Phone Case", 15.0),
            ("Chargers", "USB-C Fast Charger", 19.0),
            ("Power Banks", "Power Bank 10000mAh", 29.0),
            ("Screen Protectors", "Tempered Glass Screen Protector", 9.0),
        ],
        "Computer Accessories": [
            ("Keyboards", "Mechanical Keyboard", 69.0),
            ("Mice", "Wireless Mouse", 25.0),
            ("Monitors", "27-inch Monitor", 229.0),
            ("Webcams", "HD Webcam", 45.0),
        ],
        "Smart Home": [
            ("Smart Plugs", "Smart Plug", 18.0),
            ("Smart Bulbs", "Color Smart Bulb", 15.0),
            ("Security Cameras", "Indoor Security Camera", 39.0),
            ("Smart Speakers", "Smart Speaker", 79.0),
        ],
    },
    "Home & Kitchen": {
        "Cookware": [
            ("Frying Pans", "Nonstick Frying Pan", 32.0),
            ("Saucepans", "Stainless Saucepan", 38.0),
            ("Dutch Ovens", "Cast Iron Dutch Oven", 79.0),
            ("Baking Sheets", "Baking Sheet Set", 24.0),
        ],
        "Small Appliances": [
            ("Coffee Makers", "Drip Coffee Maker", 59.0),
            ("Blenders", "High-Speed Blender", 79.0),
            ("Air Fryers", "Air Fryer", 89.0),
            ("Toasters", "2-Slice Toaster", 35.0),
        ],
        "Bedding": [
            ("Sheets", "Cotton Sheet Set", 45.0),
            ("Pillows", "Memory Foam Pillow", 35.0),
            ("Comforters", "Down Alternative Comforter", 69.0),
            ("Blankets", "Fleece Throw Blanket", 25.0),
        ],
        "Storage": [
            ("Food Containers", "Glass Food Containers", 29.0),
            ("Closet Organizers", "Hanging Closet Organizer", 22.0),
            ("Storage Bins", "Fabric Storage Bins", 19.0),
            ("Shelving", "Metal Shelving Unit", 59.0),
        ],
    },
    "Sports & Outdoors": {
        "Fitness": [
            ("Yoga Mats", "Yoga Mat", 25.0),
            ("Dumbbells", "Adjustable Dumbbells", 119.0),
            ("Resistance Bands", "Resistance Band Set", 18.0),
            ("Jump Ropes", "Speed Jump Rope", 12.0),
        ],
        "Camping": [
            ("Tents", "2-Person Tent", 99.0),
            ("Sleeping Bags", "Sleeping Bag", 59.0),
            ("Camp Stoves", "Camp Stove", 45.0),
            ("Headlamps", "LED Headlamp", 19.0),
        ],
        "Cycling": [
            ("Bike Helmets", "Bike Helmet", 49.0),
            ("Bike Lights", "Rechargeable Bike Light", 25.0),
            ("Bike Locks", "U-Lock", 35.0),
            ("Cycling Gloves", "Cycling Gloves", 19.0),
        ],
        "Water Sports": [
            ("Swim Goggles", "Anti-Fog Swim Goggles", 15.0),
            ("Snorkel Sets", "Snorkel Set", 35.0),
            ("Life Jackets", "Life Jacket", 55.0),
            ("Dry Bags", "Waterproof Dry Bag", 18.0),
        ],
    },
    "Fashion": {
        "Women's Clothing": [
            ("Dresses", "Summer Dress", 39.0),
            ("Blouses", "Chiffon Blouse", 29.0),
            ("Leggings", "High-Waist Leggings", 22.0),
            ("Cardigans", "Knit Cardigan", 42.0),
        ],
        "Men's Clothing": [
            ("T-Shirts", "Crew Neck T-Shirt", 18.0),
            ("Jeans", "Slim Fit Jeans", 49.0),
            ("Hoodies", "Pullover Hoodie", 39.0),
            ("Jackets", "Bomber Jacket", 79.0),
        ],
        "Shoes": [
            ("Running Shoes", "Running Shoes", 89.0),
            ("Sneakers", "Canvas Sneakers", 55.0),
            ("Boots", "Leather Ankle Boots", 99.0),
            ("Sandals", "Slide Sandals", 25.0),
        ],
        "Accessories": [
            ("Watches", "Analog Watch", 89.0),
            ("Sunglasses", "Polarized Sunglasses", 29.0),
            ("Backpacks", "Laptop Backpack", 45.0),
            ("Wallets", "Leather Wallet", 29.0),
        ],
    },
    "Toys & Games": {
        "Building Toys": [
            ("Building Blocks", "Building Blocks Set", 39.0),
            ("Magnetic Tiles", "Magnetic Tiles", 45.0),
            ("Model Kits", "Model Car Kit", 29.0),
            ("Marble Runs", "Marble Run", 35.0),
        ],
        "Board Games": [
            ("Strategy Games", "Strategy Board Game", 42.0),
            ("Party Games", "Party Card Game", 20.0),
            ("Puzzles", "1000-Piece Jigsaw Puzzle", 18.0),
            ("Family Games", "Family Board Game", 25.0),
        ],
        "Dolls & Figures": [
            ("Dolls", "Fashion Doll", 22.0),
            ("Action Figures", "Action Figure", 19.0),
            ("Plush Toys", "Plush Bear", 16.0),
            ("Dollhouses", "Wooden Dollhouse", 89.0),
        ],
        "Outdoor Play": [
            ("Water Guns", "Water Blaster", 15.0),
            ("Kites", "Rainbow Kite", 14.0),
            ("Scooters", "Kids Scooter", 49.0),
            ("Sandbox Toys", "Sand Toy Set", 12.0),
        ],
    },
    "Grocery": {
        "Coffee & Tea": [
            ("Ground Coffee", "Medium Roast Ground Coffee", 12.0),
            ("Coffee Beans", "Whole Bean Coffee", 15.0),
            ("Green Tea", "Organic Green Tea", 8.0),
            ("Herbal Tea", "Chamomile Herbal Tea", 7.0),
        ],
        "Snacks": [
            ("Chips", "Sea Salt Kettle Chips", 4.0),
            ("Nuts", "Roasted Mixed Nuts", 11.0),
            ("Protein Bars", "Protein Bars 12-Pack", 22.0),
            ("Cookies", "Chocolate Chip Cookies", 5.0),
        ],
        "Pantry": [
            ("Olive Oil", "Extra Virgin Olive Oil", 14.0),
            ("Pasta", "Durum Wheat Pasta", 3.0),
            ("Spices", "Spice Variety Pack", 18.0),
            ("Honey", "Raw Honey", 10.0),
        ],
        "Beverages": [
            ("Sparkling Water", "Sparkling Water 12-Pack", 7.0),
            ("Juice", "Cold-Pressed Juice", 6.0),
            ("Energy Drinks", "Energy Drink 12-Pack", 24.0),
            ("Kombucha", "Ginger Kombucha", 4.0),
        ],
    },
    "Pet Supplies": {
        "Dog Supplies": [
            ("Dog Food", "Grain-Free Dog Food", 49.0),
            ("Dog Toys", "Chew Toy", 12.0),
            ("Dog Beds", "Orthopedic Dog Bed", 59.0),
            ("Leashes", "Reflective Dog Leash", 15.0),
        ],
        "Cat Supplies": [
            ("Cat Food", "Indoor Cat Food", 29.0),
            ("Cat Litter", "Clumping Cat Litter", 19.0),
            ("Cat Trees", "Cat Tree Tower", 69.0),
            ("Cat Toys", "Feather Wand Toy", 9.0),
        ],
        "Fish & Aquatic": [
            ("Aquariums", "10-Gallon Aquarium Kit", 79.0),
            ("Fish Food", "Tropical Fish Flakes", 8.0),
            ("Aquarium Filters", "Aquarium Filter", 25.0),
            ("Aquarium Decor", "Aquarium Decor Set", 16.0),
        ],
        "Small Animals": [
            ("Hamster Cages", "Hamster Cage", 49.0),
            ("Bedding", "Paper Bedding", 14.0),
            ("Hay", "Timothy Hay", 12.0),
            ("Small Animal Treats", "Small Animal Treats", 7.0),
        ],
    },
}

# Words that make titles vary within a leaf; adjectives are per L1.
ADJECTIVES: dict[str, list[str]] = {
    "Beauty": ["Hydrating", "Gentle", "Organic", "Radiant", "Sensitive Skin", "Long-Lasting"],
    "Electronics": ["Pro", "Ultra", "Compact", "Noise-Cancelling", "Smart", "Rechargeable"],
    "Home & Kitchen": ["Premium", "Heavy-Duty", "Easy-Clean", "Classic", "Modern", "Eco"],
    "Sports & Outdoors": ["Lightweight", "Durable", "All-Weather", "Pro", "Compact", "Ergonomic"],
    "Fashion": ["Classic", "Slim", "Vintage", "Casual", "Premium", "Everyday"],
    "Toys & Games": ["Deluxe", "Classic", "Educational", "Mini", "Creative", "Giant"],
    "Grocery": ["Organic", "Fair Trade", "Gluten-Free", "Family Size", "Artisan", "Natural"],
    "Pet Supplies": ["Natural", "Durable", "Premium", "Vet-Approved", "Washable", "Calming"],
}

VARIANTS: list[str] = [
    "Black",
    "White",
    "Blue",
    "Red",
    "Green",
    "Gray",
    "Small",
    "Medium",
    "Large",
    "Pack of 2",
    "Pack of 3",
    "Travel Size",
    "Value Pack",
    "2024 Edition",
    "Limited Edition",
]

BRAND_SYLLABLES: list[str] = [
    "lu",
    "mo",
    "ra",
    "ve",
    "xa",
    "ki",
    "no",
    "ta",
    "zen",
    "bel",
    "cor",
    "dia",
    "fen",
    "gal",
    "hal",
    "iso",
    "jun",
    "kor",
    "lin",
    "mar",
    "nex",
    "ori",
    "pra",
    "qui",
    "ros",
    "sol",
    "tri",
    "ul",
    "vio",
    "wen",
    "yar",
    "zo",
]

SELLER_SUFFIXES: list[str] = ["Store", "Shop", "Outlet", "Direct", "Market", "Goods", "Supply"]
