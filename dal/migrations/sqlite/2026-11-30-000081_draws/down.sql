DROP TABLE draw_winners;
DROP TABLE draw_participants;
DROP TABLE draw_prizes;
DROP TABLE draws;
