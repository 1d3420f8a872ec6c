"""Deterministic, realistic demo data: creator accounts and their posts.

Everything derives from ``seed`` and ``anchor``: no global random state and no wall
clock, so the same arguments always give byte-identical rows. Accounts are drawn from
one RNG; each account's posts come from an RNG keyed by (seed, account id), which lets
posts be streamed account by account without holding the whole set in memory.

All datetimes are naive UTC with millisecond precision, matching DATETIME(3) columns.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

SCALES: dict[str, tuple[int, int]] = {
    "tiny": (40, 2_000),  # end-to-end tests: a whole pipeline run in seconds
    "small": (300, 20_000),
    "medium": (3_000, 200_000),
    "large": (17_000, 1_000_000),
}
PLATFORMS: tuple[str, ...] = ("youtube", "instagram", "tiktok", "twitch", "x")

# Window over which posts are spread, ending at the anchor.
HISTORY_DAYS = 760


@dataclass(frozen=True)
class _Population:
    """Who the accounts are: how many are sparse (< 20 posts) or dormant, how followers spread, how
    unevenly the post budget is shared (sigma of the log-normal weight)."""

    sparse: float
    dormant: float
    followers_median: float
    followers_sigma: float
    weight_sigma: float


# tiny and small are curated demo sets: most accounts pass the viability rules, so a small run
# exercises every stage. medium and large follow the field (17k accounts, 9M posts, a fifth of
# the accounts and posts viable, the top accounts with thousands of posts; issue 14): more
# sparse and dormant accounts, fewer followers, and a heavy-tailed share of the posts.
_CURATED = _Population(sparse=0.12, dormant=0.14, followers_median=45_000, followers_sigma=1.7, weight_sigma=0.9)
_FIELD = _Population(sparse=0.25, dormant=0.35, followers_median=9_000, followers_sigma=1.9, weight_sigma=2.2)
POPULATIONS: dict[str, _Population] = {"tiny": _CURATED, "small": _CURATED, "medium": _FIELD, "large": _FIELD}


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: int
    platform: str
    handle: str
    display_name: str | None
    followers: int
    bio: str | None
    country: str | None
    created_at: datetime
    updated_at: datetime
    vertical: str  # ground truth for evaluation; not a DB column
    secondary_vertical: str | None  # ground truth; not a DB column


@dataclass(frozen=True, slots=True)
class PostRow:
    id: int
    account_id: int
    platform: str
    title: str
    description: str | None
    url: str | None
    published_at: datetime
    views: int
    likes: int
    comments: int
    updated_at: datetime
    vertical: str  # ground truth for evaluation; not a DB column


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class _Vocab:
    topics: tuple[str, ...]
    items: tuple[str, ...]  # concrete things: products, places, dishes, games, ...
    audiences: tuple[str, ...]
    actions: tuple[str, ...]  # imperative advice, lower case, no final period
    roles: tuple[str, ...]
    hashtags: tuple[str, ...]
    handle_words: tuple[str, ...]
    emoji: tuple[str, ...]
    titles: tuple[str, ...]  # vertical-specific title patterns


VOCAB: dict[str, _Vocab] = {
    "beauty": _Vocab(
        topics=("skincare routine", "glass skin", "no-makeup makeup", "contouring", "brow styling",
                "acne-safe makeup", "fragrance layering", "nail art", "curly hair care",
                "sunscreen", "lip combos", "dewy base"),
        items=("vitamin C serum", "tinted sunscreen", "cushion foundation", "lip oil", "retinol cream",
               "setting spray", "cream blush", "brow gel", "clay mask", "hair oil",
               "niacinamide serum", "eyelash curler", "concealer stick", "micellar water"),
        audiences=("oily skin", "dry skin", "beginners", "women over 40", "sensitive skin",
                   "hooded eyes", "busy mornings"),
        actions=("double cleanse at night", "patch test new actives", "apply sunscreen last",
                 "use cream blush before powder", "set only the T-zone", "layer thin to thick",
                 "exfoliate twice a week at most"),
        roles=("skincare nerd", "makeup artist", "licensed esthetician", "beauty editor", "nail tech"),
        hashtags=("skincare", "makeuptutorial", "beautytok", "grwm", "skincareroutine", "glowyskin",
                  "makeuplook"),
        handle_words=("glow", "glam", "skin", "blush", "beauty", "lash"),
        emoji=("✨", "💄", "🧴", "💅"),
        titles=("GRWM: {topic} with {item}", "Full face using only {item}",
                "Dermatologist-approved {topic}? I tested it", "{item} on {aud}: 12-hour wear test",
                "Drugstore vs high-end {item}", "Fixing my {topic} for {aud}"),
    ),
    "fashion": _Vocab(
        topics=("capsule wardrobe", "thrift flips", "street style", "layering", "wedding guest outfits",
                "workwear", "sneaker rotation", "tailoring basics", "color analysis", "vintage hunting",
                "winter outfits", "minimalist style"),
        items=("trench coat", "wide-leg jeans", "linen shirt", "loafers", "cargo pants", "slip dress",
               "leather jacket", "chunky sneakers", "wool blazer", "tote bag", "knit vest",
               "platform boots"),
        audiences=("petite frames", "tall girls", "guys on a budget", "the office", "curvy bodies",
                   "students"),
        actions=("tuck in the front only", "match your belt to your shoes", "get the hem tailored",
                 "build around three neutrals", "roll the sleeves twice", "check the fabric tag first"),
        roles=("stylist", "thrift queen", "menswear writer", "fashion student", "personal shopper"),
        hashtags=("ootd", "styleinspo", "thrifted", "fashiontok", "outfitideas", "capsulewardrobe",
                  "mensfashion"),
        handle_words=("style", "thread", "closet", "fits", "wardrobe", "drip"),
        emoji=("👗", "🧥", "👟", "🛍️"),
        titles=("Styling one {item} {n} ways", "Thrift with me: hunting for the perfect {item}",
                "{topic} lookbook", "Outfit of the week: {item} edition", "Building a {topic} from scratch",
                "Is the {item} trend over?"),
    ),
    "travel": _Vocab(
        topics=("solo travel", "budget backpacking", "slow travel", "night trains", "hidden beaches",
                "island hopping", "road trips", "packing light", "digital nomad life", "street markets",
                "hiking trails", "hostel life"),
        items=("Lisbon", "Kyoto", "Oaxaca", "the Dolomites", "Hội An", "Cape Town", "Tbilisi",
               "Medellín", "the Faroe Islands", "Istanbul", "Bali", "Patagonia", "Marrakech",
               "the Scottish Highlands"),
        audiences=("first-timers", "couples", "solo women", "families", "backpackers", "slow travelers"),
        actions=("book trains two weeks out", "pack one pair of shoes", "carry a little cash",
                 "walk the old town at sunrise", "skip the restaurants next to landmarks",
                 "download offline maps"),
        roles=("travel writer", "full-time nomad", "travel photographer", "backpacker", "tour guide"),
        hashtags=("travelgram", "wanderlust", "solotravel", "traveltips", "backpacking", "hiddengems",
                  "travelvlog"),
        handle_words=("wander", "roam", "nomad", "passport", "trails", "journey"),
        emoji=("✈️", "🌍", "🏝️", "🎒"),
        titles=("{n} days in {item} on a budget", "{item} travel guide: what to actually do",
                "I spent {days} days in {item}, here's what it cost",
                "Things I wish I knew before visiting {item}", "{item} vs {item2}: where should you go?",
                "Overnight train to {item}"),
    ),
    "food": _Vocab(
        topics=("meal prep", "sourdough", "one-pot dinners", "street food", "vegan comfort food",
                "knife skills", "fermentation", "weeknight pasta", "baking basics", "air fryer recipes",
                "brunch", "spice blends"),
        items=("birria tacos", "shakshuka", "miso ramen", "butter chicken", "focaccia", "pad see ew",
               "tiramisu", "bibimbap", "chili crisp", "banana bread", "paella", "dumplings",
               "smash burgers", "lemon tart"),
        audiences=("students", "beginners", "busy families", "meal preppers", "vegetarians",
                   "people cooking for one"),
        actions=("salt your pasta water properly", "rest the dough overnight",
                 "toast whole spices in a dry pan", "let the meat rest", "taste as you go",
                 "heat the pan before adding oil"),
        roles=("home cook", "pastry chef", "food critic", "recipe developer", "street food hunter"),
        hashtags=("foodtok", "recipe", "homecooking", "mealprep", "easyrecipes", "foodie", "baking"),
        handle_words=("cooks", "kitchen", "bakes", "eats", "plate", "spoon"),
        emoji=("🍜", "🍝", "🥘", "🍰"),
        titles=("Making {item} from scratch", "The best {item} I've ever made", "{item} in {minutes} minutes",
                "Cheap vs expensive {item}", "Rating every {item} spot in my city",
                "{topic} for {aud}: {n} recipes"),
    ),
    "fitness": _Vocab(
        topics=("strength training", "mobility", "marathon training", "home workouts",
                "progressive overload", "protein intake", "running form", "calisthenics",
                "recovery days", "hypertrophy", "kettlebell flows", "HIIT"),
        items=("deadlifts", "pull-ups", "Bulgarian split squats", "kettlebell swings", "the rowing machine",
               "resistance bands", "creatine", "a foam roller", "adjustable dumbbells", "carbon running shoes",
               "hip thrusts", "plank variations"),
        audiences=("beginners", "women over 30", "busy parents", "runners", "skinny guys", "desk workers"),
        actions=("track your lifts", "sleep eight hours", "warm up with light sets",
                 "add weight only when form holds", "walk after meals", "brace before every rep"),
        roles=("personal trainer", "physio", "marathoner", "powerlifter", "yoga teacher"),
        hashtags=("fitness", "gymtok", "workout", "fitnessmotivation", "strengthtraining", "running",
                  "homeworkout"),
        handle_words=("lifts", "fit", "strong", "gains", "moves", "pace"),
        emoji=("💪", "🏋️", "🏃", "🔥"),
        titles=("Full body {topic} workout ({minutes} min)", "I did {item} every day for {days} days",
                "Fixing your {item} form", "{topic} plan for {aud}", "What I eat in a day for {topic}",
                "Week {k} of {topic}"),
    ),
    "gaming": _Vocab(
        topics=("speedruns", "the ranked grind", "cozy games", "indie gems", "boss fights", "PC builds",
                "retro collecting", "patch notes", "base building", "co-op nights", "hard achievements",
                "lore deep dives"),
        items=("Elden Ring", "Minecraft", "Stardew Valley", "Valorant", "Baldur's Gate 3", "Hollow Knight",
               "Fortnite", "League of Legends", "Hades II", "Tears of the Kingdom", "Counter-Strike 2",
               "Balatro", "Palworld", "Celeste"),
        audiences=("new players", "solo queue", "casual players", "completionists", "controller players",
                   "console players"),
        actions=("read the patch notes first", "turn off motion blur", "learn one character deeply",
                 "actually play the tutorial", "rebind your keys", "review your own replays"),
        roles=("streamer", "speedrunner", "esports caster", "game reviewer", "retro collector"),
        hashtags=("gaming", "gamer", "twitchstreamer", "gamingclips", "pcgaming", "indiegames", "speedrun"),
        handle_words=("pixel", "gg", "loot", "respawn", "quest", "noscope"),
        emoji=("🎮", "🕹️", "👾", "🏆"),
        titles=("{item} any% attempt #{k}", "Beating {item} without taking damage", "{item} tier list",
                "{item} tips I wish I knew at level 1", "{item} but every death makes it harder",
                "100 hours in {item}: my honest verdict"),
    ),
    "tech": _Vocab(
        topics=("home lab", "budget smartphones", "mechanical keyboards", "desk setups", "AI tools",
                "coding tutorials", "privacy settings", "laptop buying", "smart home", "self-hosting",
                "battery life tests", "Linux ricing"),
        items=("mini PC", "foldable phone", "noise-cancelling earbuds", "e-ink tablet", "USB-C hub",
               "4K webcam", "NAS", "smartwatch", "ultrawide monitor", "Raspberry Pi", "mesh router",
               "split keyboard", "budget laptop", "e-reader"),
        audiences=("students", "programmers", "creators", "non-techy parents", "gamers", "remote workers"),
        actions=("turn on two-factor everywhere", "back up to two places", "check the charger wattage",
                 "update the firmware first", "use a password manager",
                 "turn off background app refresh"),
        roles=("software engineer", "tech reviewer", "sysadmin", "hardware nerd", "IT teacher"),
        hashtags=("tech", "techtok", "gadgets", "desksetup", "programming", "smarthome", "techreview"),
        handle_words=("tech", "byte", "bits", "circuit", "dev", "gadget"),
        emoji=("💻", "📱", "⌨️", "🔌"),
        titles=("{item} unboxing and setup", "{item} after {months} months of daily use",
                "My {year} desk setup tour", "Building a {topic} rig for under ${price}",
                "{n} {item} settings you should change right now", "I replaced my laptop with a {item}"),
    ),
    "finance": _Vocab(
        topics=("budgeting", "index investing", "paying off debt", "emergency funds", "side hustles",
                "buying a first home", "retirement accounts", "credit scores", "frugal living",
                "salary negotiation", "dividend portfolios", "taxes for freelancers"),
        items=("high-yield savings accounts", "index funds", "credit card rewards", "the 50/30/20 rule",
               "a Roth IRA", "government bonds", "ETFs", "zero-based budgets", "term deposits",
               "spending tracker apps", "robo-advisors", "stock options"),
        audiences=("your 20s", "freelancers", "new grads", "couples", "single parents", "beginners"),
        actions=("automate your savings", "pay yourself first", "check fees before you buy",
                 "keep six months of expenses in cash", "watch out for lifestyle creep",
                 "read the fine print"),
        roles=("CFP", "personal finance writer", "ex-banker", "FIRE enthusiast", "accountant"),
        hashtags=("personalfinance", "moneytok", "investing", "budgeting", "financialfreedom",
                  "savingmoney", "fire"),
        handle_words=("money", "cents", "wealth", "budget", "dollar", "coin"),
        emoji=("💸", "📈", "💰", "🏦"),
        titles=("How I saved ${price} in {months} months", "{item} explained in {minutes} minutes",
                "Reacting to your monthly budgets", "My net worth, {year} update",
                "{topic} for {aud}: a simple plan", "The truth about {item}"),
    ),
    "parenting": _Vocab(
        topics=("toddler meals", "sleep training", "screen time", "homeschooling", "newborn essentials",
                "potty training", "gentle parenting", "family routines", "sibling rivalry",
                "school lunches", "postpartum recovery", "rainy day activities"),
        items=("baby carriers", "white noise machines", "busy boards", "convertible car seats",
               "toddler towers", "bento lunch boxes", "baby monitors", "silicone bibs", "picture books",
               "travel strollers", "magnetic tiles", "sleep sacks"),
        audiences=("new parents", "toddler moms", "dads", "twin parents", "working parents",
                   "single parents"),
        actions=("name the feeling first", "keep bedtime at the same time", "offer two choices, not ten",
                 "pack lunches the night before", "lower your expectations on travel days",
                 "let them help in the kitchen"),
        roles=("mom of three", "pediatric nurse", "dad blogger", "early years teacher", "doula"),
        hashtags=("momlife", "parenting", "toddlerlife", "dadlife", "newborn", "familytime", "momtok"),
        handle_words=("mama", "papa", "littles", "nest", "family", "tots"),
        emoji=("👶", "🍼", "🧸", "👨‍👩‍👧"),
        titles=("Realistic day with a {n}-year-old", "{item}: do you actually need them?",
                "What my kids eat in a week", "{topic} tips from a very tired parent",
                "Newborn must-haves vs. wastes of money", "Our {topic} routine that finally works"),
    ),
    "music": _Vocab(
        topics=("home recording", "songwriting", "guitar tone", "music theory", "beat making",
                "vocal warmups", "vinyl collecting", "live looping", "mixing vocals", "busking",
                "album reviews", "piano covers"),
        items=("the Stratocaster", "an SM58", "Ableton Live", "the Juno-60", "a loop pedal",
               "studio monitors", "a MIDI keyboard", "an acoustic guitar", "a budget audio interface",
               "a drum machine", "a tube amp", "the ukulele"),
        audiences=("beginners", "bedroom producers", "singers", "self-taught guitarists", "drummers",
                   "songwriters"),
        actions=("record a reference track first", "tune before every take",
                 "cut the lows on everything but bass", "practice with a metronome",
                 "write the chorus first", "take breaks to reset your ears"),
        roles=("producer", "session guitarist", "singer-songwriter", "vocal coach", "DJ"),
        hashtags=("music", "newmusic", "producer", "guitar", "singersongwriter", "musictok", "beatmaking"),
        handle_words=("beats", "chords", "tunes", "groove", "melody", "vinyl"),
        emoji=("🎸", "🎧", "🎹", "🎤"),
        titles=("Making a beat with only {item}", "{topic} in {minutes} minutes",
                "Covering the song you requested", "{item} sound test, no talking",
                "Writing a full song in one hour", "Why every {aud} needs {item}"),
    ),
    "sports": _Vocab(
        topics=("match analysis", "transfer rumours", "training drills", "fantasy picks", "highlights",
                "tactics breakdowns", "youth coaching", "sports cards", "fan culture", "injury updates",
                "weekend predictions", "stadium tours"),
        items=("the Champions League final", "the NBA playoffs", "the Tour de France", "Wimbledon",
               "the Super Bowl", "the World Cup qualifiers", "pickleball", "the Six Nations",
               "the trade deadline", "F1 qualifying", "the Ryder Cup", "the derby"),
        audiences=("new fans", "coaches", "fantasy players", "youth players", "weekend warriors",
                   "season ticket holders"),
        actions=("watch the off-ball movement", "check the team news first", "warm up your ankles",
                 "keep your shape", "practice with your weak foot", "watch the full match, not just clips"),
        roles=("sports journalist", "former pro", "youth coach", "analyst", "superfan"),
        hashtags=("sports", "football", "nba", "soccer", "highlights", "f1", "matchday"),
        handle_words=("goal", "hoops", "pitch", "sport", "fanzone", "court"),
        emoji=("⚽", "🏀", "🏈", "🏎️"),
        titles=("{item}: what we learned", "Predicting {item}", "{topic}: {n} things that stood out",
                "Reacting to {item} highlights", "Why {item} will be decided in midfield",
                "Live reaction: {item}"),
    ),
    "pets": _Vocab(
        topics=("puppy training", "cat enrichment", "raw feeding", "grooming at home", "rescue stories",
                "leash training", "aquarium setups", "senior pet care", "travelling with pets",
                "separation anxiety", "bird care", "reptile habitats"),
        items=("snuffle mats", "slow feeders", "cat trees", "no-pull harnesses", "grain-free kibble",
               "self-cleaning litter boxes", "dental chews", "GPS collars", "planted aquariums",
               "heat lamps", "lick mats", "dog crates"),
        audiences=("first-time owners", "cat people", "apartment dogs", "senior pets", "rescue dogs",
                   "reactive dogs"),
        actions=("reward calm behaviour", "brush their teeth weekly", "introduce the crate slowly",
                 "rotate toys every few days", "keep training sessions short",
                 "check the ingredients list"),
        roles=("dog trainer", "vet tech", "cat rescuer", "groomer", "aquarist"),
        hashtags=("dogsofinstagram", "catsoftiktok", "pets", "puppytraining", "rescuedog", "petcare",
                  "adoptdontshop"),
        handle_words=("paws", "pup", "whiskers", "tails", "furry", "woof"),
        emoji=("🐶", "🐱", "🐾", "🐠"),
        titles=("My dog reviews {item}", "Day {k} of {topic}", "{n} signs your pet is bored",
                "Rescue update: {months} months later", "Are {item} worth it? A {role} answers",
                "Setting up {item} for {aud}"),
    ),
    "home_diy": _Vocab(
        topics=("small apartment makeovers", "renter-friendly upgrades", "tiling", "woodworking",
                "raised garden beds", "cleaning routines", "painting tips", "furniture flips",
                "closet organization", "bathroom refreshes", "kitchen renovation", "power tools"),
        items=("peel-and-stick tiles", "a cordless drill", "limewash paint", "floating shelves",
               "a raised garden bed", "a steam cleaner", "removable wallpaper", "a pocket-hole jig",
               "smart bulbs", "an orbital sander", "plywood", "a label maker"),
        audiences=("renters", "first-time homeowners", "small spaces", "weekend DIYers", "tiny budgets",
                   "beginners"),
        actions=("measure twice and cut once", "sand between coats", "find the studs before drilling",
                 "clean from top to bottom", "test the paint on a sample board",
                 "use painter's tape on the edges"),
        roles=("carpenter", "interior designer", "DIY renter", "cleaning expert", "home gardener"),
        hashtags=("diy", "homedecor", "homeimprovement", "renterfriendly", "cleantok", "woodworking",
                  "homereno"),
        handle_words=("home", "nest", "build", "house", "reno", "diy"),
        emoji=("🔨", "🪴", "🏠", "🧽"),
        titles=("${price} {topic}", "Renter-friendly makeover with {item}", "Before and after: {topic}",
                "Using {item} for the first time", "Clean with me: {topic}",
                "{n} {topic} mistakes I made so you don't have to"),
    ),
    "education": _Vocab(
        topics=("study techniques", "exam prep", "language learning", "math explained", "history stories",
                "science experiments", "note taking", "college applications", "reading lists",
                "memory tricks", "essay writing", "physics puzzles"),
        items=("the Feynman technique", "spaced repetition", "Anki decks", "the Pomodoro method",
               "calculus", "the French Revolution", "quantum mechanics", "the periodic table",
               "Shakespeare", "photosynthesis", "the Roman Empire", "linear algebra"),
        audiences=("students", "self-learners", "high schoolers", "med students", "adult learners",
                   "teachers"),
        actions=("test yourself before rereading", "teach it to someone else",
                 "study in short focused blocks", "write summaries from memory",
                 "sleep before the exam", "start with the hardest problem"),
        roles=("teacher", "PhD student", "tutor", "science communicator", "librarian"),
        hashtags=("studytok", "learnontiktok", "studytips", "education", "studywithme",
                  "languagelearning", "science"),
        handle_words=("learn", "study", "notes", "brainy", "scholar", "tutor"),
        emoji=("📚", "🧠", "✏️", "🔬"),
        titles=("{item} explained simply", "Study with me: {hours} hours of {topic}",
                "How I'd learn {item} from zero", "{item} in {minutes} minutes",
                "The strange history of {item}", "{topic} that actually stuck for {aud}"),
    ),
    "comedy": _Vocab(
        topics=("sketches", "office humour", "stand-up clips", "family chaos", "roommate stories",
                "parody songs", "prank fails", "character bits", "improv games", "crowd work",
                "dating stories", "everyday awkwardness"),
        items=("the group chat", "Monday meetings", "airport security", "my mom's voicemails",
               "gym regulars", "self-checkout machines", "first dates", "the HOA", "dad jokes",
               "reply-all emails", "flat-pack instructions", "my landlord"),
        audiences=("introverts", "millennials", "office workers", "siblings", "roommates", "overthinkers"),
        actions=("never reply-all", "leave the party before it gets weird", "mute the group chat",
                 "pretend you didn't see them", "laugh at your own jokes"),
        roles=("comedian", "sketch writer", "improv performer", "meme page admin", "actor"),
        hashtags=("comedy", "funny", "sketch", "standup", "relatable", "memes", "lol"),
        handle_words=("lol", "jokes", "laughs", "funny", "bits", "giggle"),
        emoji=("😂", "🤣", "💀", "🙃"),
        titles=("When {item} goes wrong", "{item} be like", "Types of people in {item}",
                "Crowd work: the {aud} table", "POV: {item} at 9am", "Explaining {item} to my grandma"),
    ),
    "automotive": _Vocab(
        topics=("car detailing", "project cars", "EV road trips", "track days", "engine swaps",
                "used car buying", "motorcycle touring", "off-roading", "car audio", "restoration",
                "maintenance basics", "car meets"),
        items=("the Miata", "the Model 3", "the Hilux", "an E30", "ceramic coating", "the Civic Type R",
               "the Bronco", "a pressure washer", "coilovers", "the Himalayan", "a dashcam",
               "an OBD scanner"),
        audiences=("first-time buyers", "new drivers", "weekend mechanics", "EV owners", "riders",
                   "track beginners"),
        actions=("check the oil when the engine is cold", "rotate your tires every season",
                 "wash from the top down", "scan for codes before buying", "torque to spec",
                 "never skip the pre-purchase inspection"),
        roles=("mechanic", "car reviewer", "detailer", "rally driver", "restorer"),
        hashtags=("cars", "carsoftiktok", "cartok", "detailing", "projectcar", "jdm", "ev"),
        handle_words=("motors", "garage", "revs", "drive", "torque", "wheels"),
        emoji=("🚗", "🏁", "🏍️", "🔧"),
        titles=("{item} long-term review", "Buying the cheapest {item} I could find",
                "Detailing {item}: full transformation", "{n} things I hate about {item}",
                "{topic} on a budget", "{months} months of owning {item}"),
    ),
}
VERTICALS: tuple[str, ...] = tuple(VOCAB)
# Popularity among creators: some niches are simply more crowded than others.
_VERTICAL_WEIGHTS = (9, 8, 7, 9, 8, 10, 7, 5, 5, 6, 6, 5, 5, 4, 6, 4)

# Generic patterns shared by all verticals; their slots carry the vertical signal.
_GENERIC_TITLES = (
    "{n} {topic} tips nobody tells you", "I tried {item} for {days} days", "{item} review: {verdict}",
    "{item} vs {item2}, which one is actually worth it?", "My {when} {topic} routine",
    "{topic} for {aud}", "The only {topic} guide you need in {year}", "Stop doing this with {item}",
    "Is {item} overrated?", "{topic} on a budget", "{n} mistakes everyone makes with {topic}",
    "What nobody tells you about {topic}", "Testing viral {topic} hacks", "honest thoughts on {item}",
    "{topic}, but make it simple", "A week of {topic} ({aud} edition)",
    "Ranking {n} {topic} trends from worst to best", "{topic} Q&A: you asked, I answered",
    "Beginner's guide to {topic}", "Day in my life: {topic} edition", "{item}: first impressions",
    "Answering your {topic} questions", "{minutes}-minute {topic} that actually works",
    "Everything I learned about {topic} this year", "Don't buy {item} before watching this",
    "{topic} myths, debunked", "The {adj} way to {action}", "We need to talk about {item}",
    "Trying {item} so you don't have to", "{topic} update + what's next",
    "Rating {topic} advice from the internet", "How to {action} without overthinking it",
    "{item} after {months} months: still worth it?", "Small {topic} changes that made a big difference",
)
# Short-form (TikTok / Reels) hooks.
_SHORT_TITLES = (
    "POV: you finally {action}", "{topic} hack you need", "wait for the end", "part {k}: {topic}",
    "replying to @{fan}: {topic}", "this {item} tho", "{topic} check", "{item} >>>",
    "things that just make sense: {topic}", "{aud} this one's for you", "tell me you love {topic} without telling me",
    "rate my {topic} 1-10", "nobody: / me: {topic} at 2am", "{item} in {minutes} seconds",
)
_STREAM_TITLES = (
    "{item} all day | !{cmd}", "chill {topic} stream", "day {k} of {topic} | !socials",
    "{item} with chat, come hang", "first time playing {item}", "Just Chatting: {topic} + Q&A",
    "{item} until I win | !{cmd}", "late night {topic}", "{topic} marathon, {hours}h stream",
)
_TWEET_TITLES = (
    "hot take: {item} is {verdict}", "{n} things I learned about {topic} this year 🧵",
    "thread on {topic} 👇", "reminder to {action} today", "unpopular opinion: {topic} is overrated",
    "what's the one {topic} tip you'd give {aud}?", "{item} or {item2}? go", "new video on {topic} is up",
    "if you're into {topic}, {action}. that's it. that's the tweet", "can we talk about {item} for a sec",
    "{topic} people, what am I missing?", "genuinely shocked by {item}",
)

_VERDICTS = ("worth every penny", "not what I expected", "overhyped", "surprisingly good", "a hard pass",
             "better than the hype", "fine, I guess", "a game changer", "mid", "actually brilliant")
_ADJS = ("laziest", "easiest", "cheapest", "fastest", "smartest", "most underrated", "calmest")
_WHENS = ("morning", "night", "weekend", "Sunday", "5am", "lazy", "winter", "summer")
_BRANDS = ("Lumora", "Northpeak", "Kindred Co", "Brightloop", "Velvetine", "Fernhill", "Arcwave",
           "Tidal & Twine", "Mosswood", "Cobalt Supply", "Halcyon", "Oakridge Labs")
_FANS = ("mia.k", "jay_23", "sam", "the.real.leo", "nora_b", "kofi", "ana.lu", "dev_r")
_CMDS = ("discord", "merch", "socials", "giveaway", "specs", "sponsor")
_SERIES = ("Sunday Reset", "Budget Week", "Ask Me Anything", "Deep Dive", "The Weekly",
           "Road to 100k", "Try Not To Quit", "Behind the Scenes", "Mailbag", "Field Notes")

# Description building blocks (generic; vertical slots carry the meaning).
_INTROS = (
    "In this one I go through {topic} for {aud}.", "Today we're talking about {topic}.",
    "Finally sharing my {topic} setup.", "You asked for it, so here's everything about {item}.",
    "This one took {days} days to film.", "Quick one today: {topic}.",
    "I keep getting questions about {item}, so here we go.", "Been wanting to make this for months.",
    "A slightly chaotic video about {topic}.", "New series! Starting with {item}.",
    "Short and sweet: {item} for {aud}.", "Back with another {topic} video.",
)
_TIPS = (
    "Tip: {action}.", "The trick is to {action}.", "If you only remember one thing: {action}.",
    "{Item} is what finally changed it for me.", "Honestly, {item} is {verdict}.",
    "I compared {item} and {item2} side by side.", "Don't sleep on {item}.",
    "Most people skip this, but {action}.", "My rule for {aud}: {action}.",
    "It took me years to learn to {action}.", "Everyone asks about {item}; the answer is it depends.",
    "{Topic} doesn't have to be complicated.",
)
_CTAS = (
    "Let me know in the comments what you want next.", "Save this for later!", "Subscribe for more {topic}.",
    "Follow for part {k}.", "Send this to someone who needs it.",
    "Turn on notifications so you don't miss the next one.", "Drop your questions below 👇",
    "See you next week.",
)
_SPONSORS = (
    "This video is sponsored by {brand}. Use code {code} for {pct}% off.",
    "#ad Thanks to {brand} for partnering on this one.",
    "Some links below are affiliate links; they support the channel at no extra cost to you.",
    "Gifted by {brand}, all opinions are my own.",
)
# Spoken-style fragments for the transcript-like long descriptions.
_SPOKEN = (
    "so the first thing I want to show you is {item}", "okay so, {topic}, right",
    "and honestly I was not expecting that", "let me just zoom in here",
    "if you've been here a while you know I talk about {topic} a lot",
    "{k} minutes in and I already love {item}", "the reason I say that is you really want to {action}",
    "a lot of you asked in the comments about {item}", "this is where most {aud} get stuck",
    "I'm going to be really honest with you", "compare that to {item2}, which is a different story",
    "we'll come back to that in a second", "okay, moving on", "my advice would be to {action}",
    "and that's kind of the whole point of {topic}", "it's not perfect, but it's {verdict}",
)
_FILLERS = ("so", "um", "like", "you know", "basically", "anyway", "right", "okay")


@dataclass(frozen=True)
class _Lang:
    countries: tuple[str, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    greeting: str | None
    ctas: tuple[str, ...]
    titles: tuple[str, ...]
    hashtags: tuple[str, ...]


_LANGS: dict[str, _Lang] = {
    "en": _Lang(("US", "US", "US", "GB", "CA", "AU", "IE", "NZ", "NG", "ZA", "PH", "SG"),
                ("Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan", "Chloe", "Marcus", "Zoe", "Tyler",
                 "Grace", "Caleb", "Maya", "Jordan", "Priya", "Kwame", "Hannah", "Dylan", "Aisha", "Ryan"),
                ("Smith", "Carter", "Nguyen", "Brooks", "Patel", "Reed", "Okafor", "Walsh", "Kim",
                 "Murphy", "Hughes", "Bennett", "Lopez", "Park", "Adeyemi", "Foster"),
                None, (), (), ()),
    "es": _Lang(("ES", "MX", "AR", "CO", "CL"),
                ("Lucía", "Mateo", "Sofía", "Diego", "Valentina", "Javier", "Camila", "Andrés"),
                ("García", "Martínez", "Rodríguez", "Fernández", "Torres", "Ruiz", "Morales"),
                "¡Hola a todos!", ("Suscríbete para más vídeos.", "Déjame tu pregunta en los comentarios."),
                ("Mi rutina de {topic}", "Probé {item} durante {days} días", "{n} consejos de {topic} para {aud}",
                 "{item}: ¿vale la pena?"),
                ("enespañol", "latam")),
    "pt": _Lang(("BR", "BR", "PT"),
                ("Ana", "João", "Beatriz", "Pedro", "Larissa", "Gabriel", "Mariana"),
                ("Silva", "Santos", "Oliveira", "Souza", "Costa", "Almeida"),
                "Olá pessoal!", ("Se inscreve no canal!", "Comenta aqui embaixo o que achou."),
                ("Minha rotina de {topic}", "Testei {item} por {days} dias", "{item} vale a pena?",
                 "{n} dicas de {topic}"),
                ("brasil", "dicas")),
    "fr": _Lang(("FR", "FR", "BE", "CA"),
                ("Camille", "Louis", "Léa", "Hugo", "Manon", "Théo", "Inès"),
                ("Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Girard"),
                "Salut tout le monde !", ("Abonne-toi pour la suite.", "Dis-moi en commentaire ce que t'en penses."),
                ("Ma routine {topic}", "J'ai testé {item} pendant {days} jours", "{item} : ça vaut le coup ?",
                 "{n} astuces {topic}"),
                ("france", "astuces")),
    "de": _Lang(("DE", "DE", "AT", "CH"),
                ("Lena", "Jonas", "Mia", "Felix", "Lea", "Lukas", "Hannah"),
                ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Becker"),
                "Hallo zusammen!", ("Abonniert den Kanal für mehr.", "Schreibt mir eure Fragen in die Kommentare."),
                ("Meine {topic} Routine", "Ich habe {item} {days} Tage getestet", "{item}: lohnt sich das?",
                 "{n} Tipps für {topic}"),
                ("deutsch", "tipps")),
    "it": _Lang(("IT",),
                ("Giulia", "Marco", "Chiara", "Luca", "Francesca", "Matteo"),
                ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano"),
                "Ciao a tutti!", ("Iscriviti al canale!", "Scrivetemi nei commenti cosa ne pensate."),
                ("La mia routine di {topic}", "Ho provato {item} per {days} giorni", "{item}: ne vale la pena?"),
                ("italia", "consigli")),
    "hi": _Lang(("IN",),
                ("Aarav", "Ananya", "Rohan", "Isha", "Vikram", "Neha", "Arjun", "Kavya"),
                ("Sharma", "Verma", "Iyer", "Reddy", "Gupta", "Nair", "Singh"),
                "Namaste doston!", ("Channel ko subscribe karna mat bhoolna!", "Comment karke batao kaisa laga."),
                ("{topic} ka sabse easy tarika", "Maine {item} try kiya {days} din tak", "{item} worth it hai ya nahi?",
                 "{n} {topic} tips jo koi nahi batata"),
                ("india", "hindi")),
}
_LANG_WEIGHTS = {"en": 70, "es": 9, "pt": 6, "fr": 5, "de": 4, "it": 3, "hi": 3}
_CITIES = {
    "US": ("Austin", "Brooklyn", "LA", "Chicago", "Denver"), "GB": ("London", "Manchester", "Bristol"),
    "CA": ("Toronto", "Vancouver", "Montréal"), "AU": ("Sydney", "Melbourne"), "IE": ("Dublin",),
    "NZ": ("Auckland",), "NG": ("Lagos",), "ZA": ("Cape Town", "Joburg"), "PH": ("Manila",),
    "SG": ("Singapore",), "ES": ("Madrid", "Barcelona", "Valencia"), "MX": ("CDMX", "Guadalajara"),
    "AR": ("Buenos Aires",), "CO": ("Bogotá", "Medellín"), "CL": ("Santiago",),
    "BR": ("São Paulo", "Rio", "Curitiba"), "PT": ("Lisboa", "Porto"), "FR": ("Paris", "Lyon", "Marseille"),
    "BE": ("Bruxelles",), "DE": ("Berlin", "München", "Hamburg"), "AT": ("Wien",), "CH": ("Zürich",),
    "IT": ("Milano", "Roma", "Napoli"), "IN": ("Mumbai", "Bengaluru", "Delhi"),
}
_GENERIC_EMOJI = ("🔥", "😭", "👀", "🙌", "❤️", "😅", "✅")

# Platform mix per vertical: twitch is mostly gaming, x skews to finance/tech/sports talk.
_BASE_PLATFORM_WEIGHTS = dict(zip(PLATFORMS, (28.0, 27.0, 25.0, 2.0, 12.0), strict=True))
_PLATFORM_BIAS = {
    "gaming": {"twitch": 14.0}, "music": {"twitch": 3.0}, "comedy": {"tiktok": 1.6},
    "finance": {"x": 2.5, "instagram": 0.6}, "tech": {"x": 1.8, "youtube": 1.4},
    "sports": {"x": 2.0}, "beauty": {"instagram": 1.4, "tiktok": 1.4, "x": 0.3},
    "fashion": {"instagram": 1.6, "x": 0.3}, "education": {"youtube": 1.5},
}
# (followers-relative reach, reach sigma, like rate) per platform.
_ENGAGEMENT = {
    "youtube": (0.12, 1.0, 0.035), "instagram": (0.25, 0.8, 0.05), "tiktok": (0.35, 1.5, 0.08),
    "twitch": (0.03, 0.7, 0.02), "x": (0.08, 1.2, 0.015),
}
# Posts per week, (low, high), per platform.
_CADENCE = {"youtube": (0.5, 4.0), "instagram": (2.0, 9.0), "tiktok": (3.0, 18.0),
            "twitch": (2.0, 6.0), "x": (5.0, 30.0)}
# Description length classes and their weight per platform.
_LENGTHS = ("none", "line", "short", "medium", "long")
_LENGTH_WEIGHTS = {
    "youtube": (2, 15, 30, 40, 13), "instagram": (3, 30, 40, 22, 5), "tiktok": (10, 55, 30, 5, 0),
    "twitch": (15, 45, 25, 10, 5), "x": (55, 25, 15, 5, 0),
}

# --------------------------------------------------------------------------- helpers


def _ms(dt: datetime) -> datetime:
    """Truncate to milliseconds, the precision of DATETIME(3)."""
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _naive_utc(dt: datetime) -> datetime:
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return _ms(dt)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _tag(text: str) -> str:
    return "#" + "".join(ch for ch in _ascii(text) if ch.isalnum())


_NUMBER_RANGES = {"n": (3, 12), "days": (3, 60), "months": (2, 18), "minutes": (5, 45), "hours": (2, 8),
                  "k": (2, 40), "price": (50, 5000), "pct": (10, 25)}


# Slot name -> choices, per vertical; the non-vertical pools are shared.
_POOLS: dict[str, dict[str, tuple[str, ...]]] = {
    name: {"topic": v.topics, "item": v.items, "aud": v.audiences, "action": v.actions, "role": v.roles,
           "code": v.handle_words, "verdict": _VERDICTS, "adj": _ADJS, "when": _WHENS, "brand": _BRANDS,
           "fan": _FANS, "cmd": _CMDS}
    for name, v in VOCAB.items()
}


class _Slots(dict[str, str]):
    """Pattern slots drawn on first use, so a pattern only consumes the randomness it needs
    and a slot repeated within one text keeps its value."""

    def __init__(self, rng: random.Random, vertical: str, year: int) -> None:
        super().__init__()
        self._rng, self._vertical, self._year = rng, vertical, year

    def variant(self) -> _Slots:
        """Same subject (topic, item), fresh details: later sentences of one text stay on
        topic without repeating the same advice word for word."""
        other = _Slots(self._rng, self._vertical, self._year)
        other["topic"], other["item"] = self["topic"], self["item"]
        return other

    def __missing__(self, key: str) -> str:
        if key[:1].isupper():
            value = _cap(self[key.lower()])
        else:
            value = self._draw(key)
        self[key] = value
        return value

    def _draw(self, key: str) -> str:
        rng, pools = self._rng, _POOLS[self._vertical]
        if key == "code":  # a discount code such as GLOW15
            return _ascii(rng.choice(pools["code"])).upper() + str(rng.randint(10, 30))
        if key in pools:
            return rng.choice(pools[key])
        if key in ("item2", "topic2"):
            base = key[:-1]
            return rng.choice([x for x in pools[base] if x != self[base]])
        if key in _NUMBER_RANGES:
            return str(rng.randint(*_NUMBER_RANGES[key]))
        if key == "year":
            return str(self._year)
        raise KeyError(key)


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class _Style:
    """How one creator writes; fixed per account so their posts read alike."""

    lang: str
    case: str  # "sentence" | "title" | "lower"
    emoji_rate: float
    max_hashtags: int
    separator: str
    series: str | None
    signoff: str | None
    post_hour: float  # preferred UTC hour of day
    reach: float  # account-level multiplier on views (audience quality, algorithm luck)
    secondary_share: float
    verbosity: float  # multiplies the weight of medium/long descriptions


@dataclass(frozen=True)
class _Plan:
    row: AccountRow
    n_posts: int
    first_post: datetime
    last_post: datetime
    style: _Style


@dataclass
class _Draft:
    """Account attributes drawn before post counts are allocated across all accounts."""

    id: int
    vertical: str
    secondary: str | None
    platform: str
    lang: str
    country: str | None
    followers: int
    kind: str  # "active" | "dormant" | "sparse"
    weight: float  # relative share of the post budget


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _draft(rng: random.Random, account_id: int, population: _Population) -> _Draft:
    vertical = rng.choices(VERTICALS, weights=_VERTICAL_WEIGHTS)[0]
    secondary = rng.choice([v for v in VERTICALS if v != vertical]) if rng.random() < 0.3 else None
    weights = {p: w * _PLATFORM_BIAS.get(vertical, {}).get(p, 1.0) for p, w in _BASE_PLATFORM_WEIGHTS.items()}
    lang = _weighted(rng, {k: float(w) for k, w in _LANG_WEIGHTS.items()})
    country = rng.choice(_LANGS[lang].countries) if rng.random() < 0.9 else None
    # Log-normal around the median: most creators are small, a few are huge.
    followers = int(min(max(rng.lognormvariate(math.log(population.followers_median), population.followers_sigma),
                            12), 250_000_000))
    roll = rng.random()
    kind = "sparse" if roll < population.sparse else "dormant" if roll < population.sparse + population.dormant \
        else "active"
    return _Draft(account_id, vertical, secondary, _weighted(rng, weights), lang, country, followers,
                  kind, rng.lognormvariate(0.0, population.weight_sigma))


def _allocate_posts(rng: random.Random, drafts: list[_Draft], target: int) -> list[int]:
    """Split the scale's post budget: sparse accounts get 1-19 posts, the rest at least 20
    plus a share proportional to their weight, so the total lands near ``target``."""
    counts = [rng.randint(1, 19) if d.kind == "sparse" else 20 for d in drafts]
    spare = max(target - sum(counts), 0)
    total_weight = sum(d.weight for d in drafts if d.kind != "sparse") or 1.0
    for i, d in enumerate(drafts):
        if d.kind != "sparse":
            counts[i] += round(spare * d.weight / total_weight)
    return counts


def _style(rng: random.Random, draft: _Draft) -> _Style:
    short_form = draft.platform in ("tiktok", "x")
    return _Style(
        lang=draft.lang,
        case=rng.choices(("sentence", "title", "lower"), weights=(5, 3, 4 if short_form else 1))[0],
        emoji_rate=rng.choice((0.0, 0.05, 0.2, 0.5)),
        max_hashtags=rng.choice((0, 2, 4, 8)),
        separator=rng.choice((" | ", " - ", " — ", ": ")),
        series=rng.choice(_SERIES) if rng.random() < 0.25 else None,
        signoff=rng.choice(("xx", "peace ✌️", "see ya!", "stay curious", "love you all", "- the team"))
        if rng.random() < 0.3 else None,
        post_hour=rng.uniform(0, 24),
        reach=rng.lognormvariate(0.0, 0.5),
        secondary_share=rng.uniform(0.15, 0.4),
        verbosity=rng.choice((0.4, 1.0, 1.0, 2.0)),
    )


def _identity(rng: random.Random, draft: _Draft, used: set[str]) -> tuple[str, str]:
    lang, vocab = _LANGS[draft.lang], VOCAB[draft.vertical]
    first, last = rng.choice(lang.first_names), rng.choice(lang.last_names)
    word = rng.choice(vocab.handle_words)
    sep = "_" if draft.platform in ("x", "twitch") else rng.choice(("", ".", "_"))
    handle = rng.choice((
        f"{first}{sep}{word}", f"the{word}{first}", f"{first}{last}", f"{first}{sep}{last}",
        f"{word}{sep}with{sep}{first}", f"{rng.choice(('cozy', 'daily', 'real', 'just', 'hey'))}{sep}{word}",
    ))
    handle = _ascii(handle)[:56]
    while handle in used:
        handle = f"{handle[:56]}{rng.randint(1, 9999)}"
    used.add(handle)
    display = rng.choice((f"{first} {last}", first, f"{first} | {_cap(word)}", f"{_cap(word)} with {first}"))
    return handle, display


def _bio(rng: random.Random, draft: _Draft, handle: str) -> str | None:
    if rng.random() < 0.06:
        return None
    vocab = VOCAB[draft.vertical]
    parts = [_cap(rng.choice(vocab.roles)), f"{rng.choice(vocab.topics)} + {rng.choice(vocab.topics)}"]
    if draft.secondary:
        parts.append(f"also {rng.choice(VOCAB[draft.secondary].topics)}")
    if draft.country and rng.random() < 0.6:
        parts.append(f"📍 {rng.choice(_CITIES[draft.country])}")
    if rng.random() < 0.4:
        parts.append(f"new {('videos', 'posts', 'streams')[rng.randrange(3)]} every "
                     f"{rng.choice(('Monday', 'Wednesday', 'Friday', 'Sunday', 'day'))}")
    if rng.random() < 0.5:
        parts.append(f"collabs: {handle.replace('.', '')}@{rng.choice(('gmail.com', 'talent.co', 'mgmt.io'))}")
    tail = parts[1:]
    rng.shuffle(tail)  # creators order their bio lines differently; the role stays first
    parts = parts[:1] + tail
    sep = rng.choice((" | ", "\n", " • ", ". "))
    emoji = rng.choice(vocab.emoji) + " " if rng.random() < 0.5 else ""
    return emoji + sep.join(parts)


def _window(rng: random.Random, draft: _Draft, n_posts: int, anchor: datetime) -> tuple[datetime, datetime]:
    """First and last post time. Dormant accounts stopped > 180 days ago; active ones posted
    recently, a few after a long pause."""
    if draft.kind == "dormant":
        gap = rng.uniform(185, 600)
    elif rng.random() < 0.85:
        gap = min(rng.expovariate(1 / 5), 60)
    else:
        gap = rng.uniform(20, 170)
    per_week = rng.uniform(*_CADENCE[draft.platform])
    span = min(n_posts / (per_week / 7), HISTORY_DAYS - gap)
    last = anchor - timedelta(days=gap)
    return _ms(last - timedelta(days=span)), _ms(last)


def _plan(rng: random.Random, draft: _Draft, n_posts: int, anchor: datetime, used: set[str]) -> _Plan:
    handle, display = _identity(rng, draft, used)
    first, last = _window(rng, draft, n_posts, anchor)
    created = _ms(first - timedelta(days=rng.uniform(3, 1200), seconds=rng.uniform(0, 86_400)))
    updated = max(created, _ms(anchor - timedelta(days=rng.uniform(0, 45))))
    row = AccountRow(
        id=draft.id, platform=draft.platform, handle=handle, display_name=display,
        followers=draft.followers, bio=_bio(rng, draft, handle), country=draft.country,
        created_at=created, updated_at=updated, vertical=draft.vertical, secondary_vertical=draft.secondary,
    )
    return _Plan(row, n_posts, first, last, _style(rng, draft))


def _plan_accounts(seed: int, n_accounts: int, n_posts: int, anchor: datetime,
                   population: _Population) -> list[_Plan]:
    rng = random.Random(f"accounts:{seed}")
    drafts = [_draft(rng, i, population) for i in range(1, n_accounts + 1)]
    counts = _allocate_posts(rng, drafts, n_posts)
    used: set[str] = set()
    return [_plan(rng, d, c, anchor, used) for d, c in zip(drafts, counts, strict=True)]


# --------------------------------------------------------------------------- posts


def _publish_times(rng: random.Random, plan: _Plan) -> list[datetime]:
    span = (plan.last_post - plan.first_post).total_seconds() / 86_400
    times = [plan.last_post]
    for _ in range(plan.n_posts - 1):
        day = plan.first_post.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            days=math.floor(rng.uniform(0, span)))
        hour = (plan.style.post_hour + rng.gauss(0, 2.5)) % 24
        t = max(day + timedelta(hours=hour), plan.first_post)
        times.append(_ms(min(t, plan.last_post)))
    times.sort()
    return times


def _styled(rng: random.Random, title: str, style: _Style, vocab: _Vocab) -> str:
    if style.case == "lower":
        title = title.lower()
    elif style.case == "title":
        title = " ".join(_cap(w) if w.islower() and len(w) > 3 else w for w in title.split(" "))
    else:
        title = _cap(title)
    if rng.random() < style.emoji_rate:
        emoji = rng.choice(vocab.emoji + _GENERIC_EMOJI)
        title = f"{emoji} {title}" if rng.random() < 0.3 else f"{title} {emoji}"
    return title


def _title(rng: random.Random, platform: str, plan: _Plan, vocab: _Vocab, slots: _Slots, episode: int) -> str:
    style, lang = plan.style, _LANGS[plan.style.lang]
    if lang.titles and rng.random() < 0.3:
        pattern = rng.choice(lang.titles)
    elif platform == "twitch":
        pattern = rng.choice(_STREAM_TITLES)
    elif platform == "x":
        pattern = rng.choice(_TWEET_TITLES)
    elif platform in ("tiktok", "instagram") and rng.random() < 0.4:
        pattern = rng.choice(_SHORT_TITLES)
    else:
        pattern = rng.choice(vocab.titles if rng.random() < 0.3 else _GENERIC_TITLES)
    title = _styled(rng, pattern.format_map(slots), style, vocab)
    if platform == "twitch" and rng.random() < 0.4:
        title = f"🔴 LIVE{style.separator}{title}"
    if style.series and platform == "youtube" and rng.random() < 0.3:
        title = f"{title}{style.separator}{style.series} #{episode}"
    if platform == "tiktok" and style.max_hashtags and rng.random() < 0.5:
        title += " " + " ".join(_hashtags(rng, plan, vocab, slots, 3))
    return title[:512]


def _hashtags(rng: random.Random, plan: _Plan, vocab: _Vocab, slots: _Slots, limit: int) -> list[str]:
    pool = list(vocab.hashtags) + [slots["topic"], *_LANGS[plan.style.lang].hashtags]
    if plan.row.platform in ("tiktok", "instagram"):
        pool += ["fyp", "explore", "viral", "reels"]
    k = min(rng.randint(1, max(limit, 1)), len(pool))
    return [_tag(t) for t in rng.sample(pool, k)]


def _sentences(rng: random.Random, pool: tuple[str, ...], slots: _Slots, k: int) -> list[str]:
    return [p.format_map(slots if i == 0 else slots.variant()) for i, p in enumerate(rng.sample(pool, k))]


def _chapters(rng: random.Random, vocab: _Vocab) -> str:
    seconds, lines = 0, ["00:00 Intro"]
    for label in rng.sample(vocab.topics + vocab.items, rng.randint(3, 6)):
        seconds += rng.randint(40, 420)
        lines.append(f"{seconds // 60:02d}:{seconds % 60:02d} {_cap(label)}")
    return "\n".join(lines)


def _spoken(rng: random.Random, slots: _Slots, target_words: int) -> list[str]:
    """Rambling spoken-style sentences about one subject, at least ``target_words`` long."""
    words, sentences = 0, []
    while words < target_words:
        pool = _TIPS if rng.random() < 0.3 else _SPOKEN
        sentence = rng.choice(pool).format_map(slots.variant()).rstrip(".")
        if rng.random() < 0.4:
            sentence = f"{rng.choice(_FILLERS)} {sentence[:1].lower()}{sentence[1:]}"
        sentences.append(sentence)
        words += sentence.count(" ") + 1
    return sentences


def _long(rng: random.Random, platform: str, slots: _Slots) -> list[str]:
    """The long-form minority (300-900 words): auto-captions for video platforms, a
    story-time caption split into paragraphs elsewhere."""
    sentences = _spoken(rng, slots, rng.randint(300, 900))
    if platform in ("youtube", "twitch"):
        return ["Transcript: " + ". ".join(s.lower() for s in sentences) + "."]
    paragraphs, i = [], 0
    while i < len(sentences):
        step = rng.randint(3, 6)
        paragraphs.append(" ".join(_cap(s) + "." for s in sentences[i:i + step]))
        i += step
    return paragraphs


def _medium(rng: random.Random, plan: _Plan, vocab: _Vocab, slots: _Slots) -> list[str]:
    paragraphs = [" ".join(_sentences(rng, _INTROS, slots, rng.randint(1, 2)) +
                           _sentences(rng, _TIPS, slots.variant(), rng.randint(1, 3)))]
    if rng.random() < 0.5:
        paragraphs.append("\n".join(f"- {_cap(a)}" for a in rng.sample(vocab.actions, rng.randint(2, 4))))
    if plan.row.platform == "youtube" and rng.random() < 0.5:
        paragraphs.append(_chapters(rng, vocab))
    if rng.random() < 0.25:
        paragraphs.append(rng.choice(_SPONSORS).format_map(slots))
    paragraphs.append(rng.choice(_CTAS).format_map(slots))
    return paragraphs


def _short(rng: random.Random, slots: _Slots) -> str:
    sentences = _sentences(rng, _INTROS + _TIPS, slots, 1) + _sentences(rng, _TIPS, slots.variant(), rng.randint(0, 2))
    if rng.random() < 0.5:
        sentences.append(rng.choice(_CTAS).format_map(slots))
    return " ".join(sentences)


def _description(rng: random.Random, plan: _Plan, vocab: _Vocab, slots: _Slots) -> str | None:
    style, lang = plan.style, _LANGS[plan.style.lang]
    weights = [w * (style.verbosity if i >= 3 else 1.0) for i, w in enumerate(_LENGTH_WEIGHTS[plan.row.platform])]
    length = rng.choices(_LENGTHS, weights=weights)[0]
    if length == "none":
        return None
    if length == "line":
        paragraphs = _sentences(rng, _INTROS + _TIPS, slots, 1)
    elif length == "short":
        paragraphs = [_short(rng, slots)]
    elif length == "medium":
        paragraphs = _medium(rng, plan, vocab, slots)
    else:
        paragraphs = [*_long(rng, plan.row.platform, slots), rng.choice(_CTAS).format_map(slots)]
    if lang.greeting and rng.random() < 0.6:
        paragraphs = [lang.greeting, *paragraphs, rng.choice(lang.ctas)]
    if style.signoff and length != "line":
        paragraphs.append(style.signoff)
    if style.max_hashtags and rng.random() < 0.7:
        paragraphs.append(" ".join(_hashtags(rng, plan, vocab, slots, style.max_hashtags)))
    return "\n\n".join(paragraphs)


def _url(rng: random.Random, platform: str, handle: str) -> str | None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    if platform == "youtube":
        return "https://www.youtube.com/watch?v=" + "".join(rng.choices(alphabet, k=11))
    if platform == "instagram":
        return f"https://www.instagram.com/p/{''.join(rng.choices(alphabet, k=11))}/"
    if platform == "tiktok":
        return f"https://www.tiktok.com/@{handle}/video/{rng.randrange(10**18, 10**19)}"
    if platform == "twitch":
        # Past broadcasts expire on Twitch, so old streams often have no VOD link.
        return f"https://www.twitch.tv/videos/{rng.randrange(10**9, 10**10)}" if rng.random() < 0.7 else None
    return f"https://x.com/{handle}/status/{rng.randrange(10**18, 10**19)}"


def _engagement(rng: random.Random, plan: _Plan, published: datetime, anchor: datetime) -> tuple[int, int, int]:
    reach, sigma, like_rate = _ENGAGEMENT[plan.row.platform]
    age_hours = max((anchor - published).total_seconds() / 3600, 0.0)
    maturity = 1 - math.exp(-age_hours / 48)  # fresh posts are still accumulating views
    viral = 25.0 if rng.random() < 0.01 else 1.0
    views = int(plan.row.followers * reach * plan.style.reach * rng.lognormvariate(0, sigma) * maturity * viral)
    views += rng.randint(0, 40)
    likes = int(views * like_rate * rng.lognormvariate(0, 0.4))
    comments = int(likes * rng.uniform(0.005, 0.06))
    return views, likes, comments


def _account_posts(seed: int, plan: _Plan, first_id: int, anchor: datetime) -> Iterator[PostRow]:
    rng = random.Random(f"posts:{seed}:{plan.row.id}")
    row = plan.row
    for offset, published in enumerate(_publish_times(rng, plan)):
        vertical = row.vertical
        if row.secondary_vertical and rng.random() < plan.style.secondary_share:
            vertical = row.secondary_vertical
        vocab = VOCAB[vertical]
        slots = _Slots(rng, vertical, published.year)
        views, likes, comments = _engagement(rng, plan, published, anchor)
        updated = _ms(min(anchor, published + timedelta(hours=rng.expovariate(1 / 60))))
        yield PostRow(
            id=first_id + offset, account_id=row.id, platform=row.platform,
            title=_title(rng, row.platform, plan, vocab, slots, offset + 1),
            description=_description(rng, plan, vocab, slots), url=_url(rng, row.platform, row.handle),
            published_at=published, views=views, likes=likes, comments=comments, updated_at=updated,
            vertical=vertical,
        )


def _stream_posts(seed: int, plans: list[_Plan], anchor: datetime) -> Iterator[PostRow]:
    next_id = 1
    for plan in plans:
        yield from _account_posts(seed, plan, next_id, anchor)
        next_id += plan.n_posts


def generate(scale: str, *, seed: int = 7, anchor: datetime) -> tuple[list[AccountRow], Iterator[PostRow]]:
    """Accounts (materialised) and their posts (a lazy stream, grouped by account).

    ``anchor`` is "now" for the data set: posts are spread over roughly two years before it.
    Aware datetimes are converted to UTC; all returned datetimes are naive UTC.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    n_accounts, n_posts = SCALES[scale]
    anchor = _naive_utc(anchor)
    plans = _plan_accounts(seed, n_accounts, n_posts, anchor, POPULATIONS[scale])
    return [p.row for p in plans], _stream_posts(seed, plans, anchor)
