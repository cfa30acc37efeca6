"""The deterministic English generator: 36 topics x templates x vocabulary, sentences and
Markdown documents made of them (the queries, the synthetic chunks' text, the ingest corpus)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

# --- the sentence generator --------------------------------------------------------------------

# topic: subjects | verbs (base form, regular) | objects | trailing details; items split on ";"
TOPICS: dict[str, tuple[str, str, str, str]] = {
    "databases": (
        "the database administrator;a read replica;the query planner;the migration script;"
        "the connection pool;our reporting job",
        "rebuild;vacuum;index;partition;lock;replicate;cache",
        "the orders table;stale statistics;long-running transactions;the write-ahead log;"
        "a foreign key;the nightly backup;slow joins",
        "during peak traffic;after every deploy;without downtime;when disk usage grows;"
        "on the primary server",
    ),
    "cooking": (
        "the head chef;a home cook;my grandmother;the pastry team;the line cook;a food blogger",
        "roast;simmer;season;knead;marinate;braise;whisk",
        "the garlic;a pot of tomato sauce;fresh pasta dough;the chicken thighs;brown butter;"
        "a loaf of sourdough;the onions",
        "over low heat;for about twenty minutes;until golden;the night before;with plenty of salt",
    ),
    "gardening": (
        "the gardener;a beginner;our allotment group;the greenhouse manager;my neighbour;"
        "the landscaper",
        "prune;water;mulch;transplant;fertilise;harvest;plant",
        "the tomato seedlings;rose bushes;the vegetable beds;young fruit trees;the lawn;"
        "spring bulbs;the herb garden",
        "in early spring;before the first frost;after heavy rain;in the shade;every other week",
    ),
    "astronomy": (
        "the space telescope;an amateur astronomer;the observatory;the research team;"
        "a radio dish;the survey",
        "observe;measure;detect;map;track;photograph;catalogue",
        "distant galaxies;the lunar eclipse;a passing comet;exoplanet transits;"
        "the cosmic microwave background;variable stars;the rings of Saturn",
        "on clear nights;from the southern hemisphere;with infrared cameras;"
        "over several months;far from city lights",
    ),
    "finance": (
        "the investor;a pension fund;the central bank;our accountant;the trading desk;"
        "a retail saver",
        "diversify;hedge;rebalance;borrow;invest;refinance;audit",
        "the bond portfolio;interest rate risk;a fixed-rate mortgage;index funds;"
        "the quarterly earnings;currency exposure;emergency savings",
        "when inflation rises;before the market opens;over a ten-year horizon;"
        "after the rate decision;with low fees",
    ),
    "football": (
        "the striker;the home team;the coach;a young goalkeeper;the referee;the midfield",
        "defend;press;attack;block;pass;tackle;concede",
        "the penalty area;a counterattack;the final whistle;set pieces;the offside line;"
        "the league title;long balls",
        "in the second half;during extra time;against strong opponents;in heavy rain;"
        "at the away ground",
    ),
    "medicine": (
        "the nurse;a general practitioner;the cardiology ward;the surgeon;the pharmacist;"
        "a clinical trial",
        "diagnose;monitor;prescribe;treat;vaccinate;examine;refer",
        "high blood pressure;the patient's symptoms;antibiotic resistance;chronic back pain;"
        "seasonal flu;type 2 diabetes;a broken wrist",
        "within forty-eight hours;at the follow-up visit;in elderly patients;"
        "after the blood test;with fewer side effects",
    ),
    "music": (
        "the orchestra;a session guitarist;the sound engineer;the choir;a jazz pianist;"
        "the producer",
        "rehearse;record;compose;arrange;mix;perform;tune",
        "the final movement;a new album;the bass line;vocal harmonies;the drum track;"
        "an old folk song;the string section",
        "in the studio;before the concert;in a minor key;with vintage microphones;at half tempo",
    ),
    "travel": (
        "the tourist;a backpacker;our travel agent;the airline;a family of four;the tour guide",
        "book;cancel;explore;pack;visit;reschedule;upgrade",
        "a window seat;the old town;travel insurance;a night train;the mountain hostel;"
        "museum tickets;the rental car",
        "in the off season;at the last minute;on a tight budget;for the long weekend;"
        "without a reservation",
    ),
    "machine learning": (
        "the data scientist;our training pipeline;the model;a research intern;"
        "the evaluation harness;the labelling team",
        "train;evaluate;regularise;tokenise;fine-tune;label;deploy",
        "the validation set;a transformer model;class imbalance;the learning rate;"
        "noisy labels;embedding vectors;the loss curve",
        "on a single GPU;with early stopping;after data augmentation;for three epochs;"
        "on held-out data",
    ),
    "security": (
        "the security team;an attacker;the firewall;our penetration tester;the intrusion detector;"
        "the on-call engineer",
        "encrypt;rotate;patch;audit;block;revoke;scan",
        "leaked credentials;the TLS certificates;phishing emails;an exposed admin port;"
        "the access tokens;vulnerable dependencies;suspicious logins",
        "within an hour;before the audit;across every server;after the breach;"
        "using multi-factor authentication",
    ),
    "weather": (
        "the forecaster;a storm front;the weather station;the coastal region;the met office;"
        "a cold air mass",
        "predict;bring;track;record;issue;warn;measure",
        "heavy snowfall;a heat wave;strong gusts;the rainfall totals;a flood warning;"
        "morning fog;thunderstorms",
        "over the weekend;along the coast;in the northern valleys;late in the afternoon;"
        "for the next five days",
    ),
    "history": (
        "the historian;a medieval chronicler;the archive;the museum curator;"
        "an archaeologist;the empire",
        "document;excavate;reconstruct;preserve;translate;interpret;date",
        "the ancient trade routes;a Roman villa;the royal letters;the fall of the city;"
        "bronze age tools;the peace treaty;the old parish records",
        "in the twelfth century;after the war;from fragments;near the river delta;"
        "with radiocarbon dating",
    ),
    "law": (
        "the judge;a defence lawyer;the tenant;the appeals court;the prosecutor;the contract",
        "appeal;draft;enforce;dispute;settle;review;overturn",
        "the lease agreement;a non-compete clause;the verdict;the patent claim;"
        "an unfair dismissal;the privacy policy;the inheritance",
        "before the hearing;within thirty days;under consumer law;out of court;"
        "in the supreme court",
    ),
    "chemistry": (
        "the chemist;a lab technician;the catalyst;the reaction;the graduate student;"
        "the spectrometer",
        "synthesise;titrate;dissolve;oxidise;purify;distil;analyse",
        "the organic compound;a buffer solution;the polymer chain;trace impurities;"
        "the acid sample;a crystal structure;the reaction yield",
        "at room temperature;under nitrogen;in a fume hood;over several hours;"
        "with a platinum catalyst",
    ),
    "fitness": (
        "the personal trainer;a marathon runner;the gym;my cycling club;a beginner lifter;"
        "the physiotherapist",
        "stretch;strengthen;train;recover;lift;sprint;warm up",
        "the hamstrings;core muscles;interval sessions;a heavy squat;the long run;"
        "shoulder mobility;rest days",
        "three times a week;before breakfast;after an injury;with light weights;"
        "during the off season",
    ),
    "real estate": (
        "the estate agent;a first-time buyer;the landlord;the surveyor;the housing market;"
        "the mortgage broker",
        "inspect;renovate;list;appraise;rent;insulate;negotiate",
        "the two-bedroom flat;a leaking roof;the asking price;the ground floor;"
        "a detached house;the heating system;damp walls",
        "before the winter;in the city centre;below market value;after the survey;"
        "within the first year",
    ),
    "automotive": (
        "the mechanic;an electric car;the dealership;my old hatchback;the engine;the driver",
        "service;replace;charge;diagnose;align;repair;inspect",
        "the brake pads;a flat tyre;the battery pack;the timing belt;engine oil;"
        "the warning light;the suspension",
        "every ten thousand miles;before a long trip;in cold weather;at the roadside;"
        "under warranty",
    ),
    "aviation": (
        "the pilot;air traffic control;the ground crew;a regional jet;the flight dispatcher;"
        "the maintenance hangar",
        "delay;refuel;de-ice;reroute;inspect;clear;divert",
        "the departing flight;the landing gear;crosswind landings;the fuel reserves;"
        "the holding pattern;cabin pressure;the runway lights",
        "in low visibility;at cruising altitude;before take-off;during the night shift;"
        "over the Atlantic",
    ),
    "photography": (
        "the photographer;a wedding shooter;my mirrorless camera;the editor;"
        "a wildlife photographer;the studio",
        "expose;frame;focus;edit;crop;light;shoot",
        "the portrait;a long exposure;the golden hour;raw files;the background blur;"
        "street scenes;the white balance",
        "with a fast lens;at dawn;on a tripod;in harsh sunlight;without a flash",
    ),
    "education": (
        "the teacher;a primary school;the university;our tutor;the exam board;a student",
        "assess;teach;revise;grade;mentor;plan;explain",
        "the reading curriculum;algebra homework;the final exam;group projects;"
        "the science syllabus;essay writing;online lessons",
        "before the holidays;in small groups;after school;with weekly quizzes;"
        "during the first term",
    ),
    "marine biology": (
        "the marine biologist;a coral reef;the research vessel;a humpback whale;"
        "the fishing fleet;the diving team",
        "survey;tag;protect;sample;migrate;bleach;monitor",
        "plankton blooms;the sea turtles;kelp forests;the shark population;ocean acidity;"
        "the mangroves;deep-sea vents",
        "along the continental shelf;in warmer waters;during spawning season;"
        "off the coast;at great depth",
    ),
    "energy": (
        "the utility company;a wind farm;the grid operator;rooftop solar panels;"
        "the power plant;the battery storage site",
        "generate;store;balance;export;curtail;transmit;upgrade",
        "surplus electricity;peak demand;the transmission lines;the heat pumps;"
        "renewable output;the substation;off-peak tariffs",
        "on windy nights;during the summer;across the region;at lower cost;when prices spike",
    ),
    "retail": (
        "the store manager;an online shop;the checkout staff;the supplier;the loyalty program;"
        "a small boutique",
        "restock;discount;ship;return;display;track;price",
        "winter coats;the inventory;customer orders;the clearance items;gift cards;"
        "the shop window;damaged parcels",
        "before the holiday rush;within two days;on weekends;at the end of the season;"
        "across all branches",
    ),
    "video games": (
        "the game designer;a speedrunner;the boss fight;the multiplayer server;"
        "the level editor;the player",
        "unlock;balance;patch;stream;render;respawn;explore",
        "the hidden level;a rare item;frame rate drops;the skill tree;open-world maps;"
        "the final boss;ranked matches",
        "on hard difficulty;after the latest update;in co-op mode;at sixty frames per second;"
        "without a guide",
    ),
    "literature": (
        "the novelist;a poet;the literary critic;the publisher;the narrator;the book club",
        "publish;revise;narrate;review;translate;adapt;discuss",
        "the first chapter;a sonnet sequence;the unreliable narrator;the short stories;"
        "the plot twist;a Victorian novel;the epilogue",
        "in the second edition;for young readers;in plain prose;over many drafts;"
        "after the author's death",
    ),
    "architecture": (
        "the architect;a structural engineer;the city planner;the building;"
        "the construction crew;the heritage board",
        "design;reinforce;restore;ventilate;approve;demolish;extend",
        "the concrete facade;a timber frame;the atrium;load-bearing walls;"
        "the public square;the glass roof;the old warehouse",
        "to modern standards;within the budget;in an earthquake zone;"
        "with natural light;near the harbour",
    ),
    "psychology": (
        "the therapist;a clinical psychologist;the study participant;the researcher;"
        "an anxious teenager;the support group",
        "cope;measure;reduce;observe;reframe;track;discuss",
        "negative thoughts;sleep quality;the stress response;childhood memories;"
        "social anxiety;working memory;daily habits",
        "over eight weeks;in a controlled study;after each session;with mindfulness;"
        "under time pressure",
    ),
    "logistics": (
        "the warehouse;a delivery driver;the freight forwarder;the shipping container;"
        "the dispatch team;the customs office",
        "route;load;clear;deliver;forecast;consolidate;track",
        "pallets of goods;the cargo manifest;the last mile;the port backlog;"
        "refrigerated trucks;inbound shipments;the delivery window",
        "before noon;across the border;during the strike;at the distribution centre;"
        "with real-time tracking",
    ),
    "pets": (
        "the veterinarian;my old labrador;a rescue cat;the dog trainer;the pet owner;"
        "the animal shelter",
        "groom;adopt;train;feed;walk;vaccinate;microchip",
        "the new puppy;a nervous kitten;the fish tank;flea treatment;the senior dog;"
        "dry food;the rabbit hutch",
        "twice a day;in the park;after surgery;with positive rewards;during fireworks",
    ),
    "film": (
        "the director;a cinematographer;the film festival;the editor;the lead actor;"
        "the streaming service",
        "shoot;cast;edit;premiere;score;distribute;restore",
        "the opening scene;a silent film;the visual effects;the documentary;"
        "the director's cut;a long tracking shot;the trailer",
        "on location;in black and white;on a small budget;before the premiere;"
        "with a handheld camera",
    ),
    "geology": (
        "the geologist;a volcano;the seismic network;the mining company;a glacier;the field team",
        "erode;survey;drill;sample;deposit;fracture;uplift",
        "the limestone cliffs;volcanic ash;the fault line;groundwater aquifers;"
        "the mineral veins;sediment layers;the river canyon",
        "over millions of years;after the earthquake;in the highlands;under the ice;"
        "at the tectonic boundary",
    ),
    "cloud infrastructure": (
        "the platform team;a Kubernetes cluster;the load balancer;our autoscaler;"
        "the container registry;the SRE on call",
        "provision;scale;monitor;roll back;deploy;throttle;migrate",
        "the stateless services;a failing pod;the message queue;cross-region traffic;"
        "the service mesh;idle virtual machines;the DNS records",
        "during the outage;behind a feature flag;across three zones;"
        "with zero downtime;at the end of the sprint",
    ),
    "accounting": (
        "the bookkeeper;the finance department;an external auditor;the tax adviser;"
        "the small business owner;the payroll system",
        "reconcile;invoice;depreciate;file;accrue;audit;forecast",
        "the bank statements;unpaid invoices;the VAT return;fixed assets;"
        "the year-end accounts;travel expenses;the cash flow",
        "before the deadline;at month end;under the new rules;for each cost centre;"
        "in the general ledger",
    ),
    "agriculture": (
        "the farmer;a dairy cooperative;the agronomist;the combine harvester;"
        "the irrigation system;an orchard owner",
        "irrigate;harvest;rotate;fertilise;spray;plough;graze",
        "the wheat fields;dairy cattle;the apple orchard;cover crops;the topsoil;"
        "the barley yield;the grazing pasture",
        "after a dry summer;before the rains;on sloping land;with precision sensors;in the autumn",
    ),
    "mobile apps": (
        "the app developer;a push notification;the iOS build;the product manager;"
        "the crash reporter;the beta tester",
        "ship;localise;profile;cache;notify;debug;release",
        "the onboarding screen;offline mode;battery drain;the login flow;dark mode;"
        "in-app purchases;the settings page",
        "on older phones;before the store review;for right-to-left languages;"
        "in the next release;with a slow network",
    ),
}

TEMPLATES = (
    "{S} {v3} {o} {d}.",
    "In most cases, {s} {v3} {o} {d}.",
    "How often should {s} {v} {o}?",
    "Our team noticed that {s} {v3} {o} {d}.",
    "{S} cannot {v} {o} without {o2}.",
    "A common mistake is letting {s} {v} {o} {d}.",
    "When {s} {v3} {o}, {o2} needs attention {d}.",
    "The guide explains how {s} {v3} {o} {d}.",
    "Before {s} can {v} {o}, check {o2}.",
    "Experts recommend that {s} {v} {o} {d}.",
    "It is unusual for {s} to {v} {o} {d}.",
    "{S} and {s2} both {v} {o}.",
    "Last year {s} started to {v} {o} {d}.",
    "Can {s} {v} {o} {d}?",
    "Nobody expected {s} to {v} {o} so quickly.",
    "According to the report, {s} will {v} {o} {d}.",
)


def _third_person(verb: str) -> str:
    head, _, rest = verb.partition(" ")
    if head.endswith(("s", "sh", "ch", "x", "z", "o")):
        head += "es"
    elif head.endswith("y") and head[-2:-1] not in "aeiou":
        head = head[:-1] + "ies"
    else:
        head += "s"
    return f"{head} {rest}".strip()


@dataclass(frozen=True)
class Topic:
    name: str
    subjects: list[str]
    verbs: list[str]
    objects: list[str]
    details: list[str]


def topics() -> list[Topic]:
    return [Topic(name, *(part.split(";") for part in parts)) for name, parts in TOPICS.items()]


def sentence(rng: random.Random, topic: Topic) -> str:
    subject, other_subject = rng.sample(topic.subjects, 2)
    obj, other_obj = rng.sample(topic.objects, 2)
    verb = rng.choice(topic.verbs)
    return rng.choice(TEMPLATES).format(
        S=subject[0].upper() + subject[1:],
        s=subject,
        s2=other_subject,
        v=verb,
        v3=_third_person(verb),
        o=obj,
        o2=other_obj,
        d=rng.choice(topic.details),
    )


def sentences(count: int, seed: int) -> tuple[list[str], list[int]]:
    """`count` distinct sentences, round-robin over the topics, with each one's topic index."""
    rng = random.Random(seed)
    all_topics = topics()
    seen: set[str] = set()
    texts: list[str] = []
    labels: list[int] = []
    attempts = 0
    while len(texts) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError("the sentence generator ran out of distinct sentences")
        index = len(texts) % len(all_topics)
        text = sentence(rng, all_topics[index])
        if text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(index)
    return texts, labels


HEADINGS = (
    "Overview",
    "Background",
    "Common problems",
    "Step by step",
    "Costs and trade-offs",
    "Troubleshooting",
    "Checklist",
    "Worked example",
    "Safety notes",
    "Frequently asked questions",
    "Lessons learned",
    "What to measure",
    "Tools",
    "Further reading",
)


def _paragraph(rng: random.Random, topic: Topic) -> str:
    return " ".join(sentence(rng, topic) for _ in range(rng.randint(2, 5)))


def corpus(count: int, seed: int) -> list[Any]:
    """`count` Markdown documents: a title, an intro, 9-12 sections of 1-2 paragraphs."""
    from agent33.memory.ingest import DocumentInput

    rng = random.Random(seed)
    all_topics = topics()
    documents = []
    for n in range(count):
        topic = all_topics[n % len(all_topics)]
        title = f"{topic.name.capitalize()}: notes on {rng.choice(topic.objects)}"
        lines = [f"# {title}", "", _paragraph(rng, topic), ""]
        for heading in rng.sample(HEADINGS, rng.randint(9, 12)):
            lines += [f"## {heading}: {rng.choice(topic.objects)}", ""]
            for _ in range(rng.randint(1, 2)):
                lines += [_paragraph(rng, topic), ""]
        documents.append(
            DocumentInput(
                key=f"docs/{topic.name.replace(' ', '-')}/{n:04d}.md",
                text="\n".join(lines),
                title=title,
                source="benchmark",
                media_type="text/markdown",
                metadata={"topic": topic.name},
            )
        )
    return documents
