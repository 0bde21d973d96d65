/**
 * Beaker's own job XML samples (its user guide) through the beaker provider's job XML handling:
 * the tag lands in the job's whiteboard only, everything else survives, and the reservation
 * length is read as Beaker reads it (RESERVETIME, `<reservesys duration>`, else 24 h).
 */
import { XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { parseWhiteboard, reserveTimeOf, reserves, tagJobXml } from '../../providers/beaker/jobxml.js';
import { textSample } from './samples.js';

const rec = { id: 'rec-1', brokerId: 'broker-1' };

describe("Beaker's job XML samples", () => {
  it('tags the virtualization workflow sample job: job whiteboard only, guest recipes kept', () => {
    const xml = textSample('beaker/virtualization-workflow-sample-job.xml');
    const tagged = tagJobXml(xml, rec);
    expect(XMLValidator.validate(tagged)).toBe(true);
    expect(parseWhiteboard(tagged)).toEqual(rec);
    expect(tagged).toMatch(/<whiteboard>An example job for testing Virtualization Workflow \[hostbroker id=rec-1 broker=broker-1\]<\/whiteboard>/);
    expect(tagged.match(/<guestrecipe /g)).toHaveLength(2);
    expect(tagged).toContain('<key_value key="HVM" op="=" value="1"/>');
    // Recipes' whiteboard attributes are left alone.
    expect(tagged).toContain('<recipe role="RECIPE_MEMBERS" whiteboard="">');
    // reservesys without RESERVETIME: Beaker reserves for 24 hours.
    expect(reserves(tagged)).toBe(true);
    expect(reserveTimeOf(tagged)).toBe(86_400);
  });

  it("reads the user guide's reservation examples (system-reservation.rst)", () => {
    const task = `<job><recipeSet><recipe><task name="/distribution/reservesys" role="STANDALONE">
      <params>
        <param name="RESERVE_IF_FAIL" value="True" />
        <param name="RESERVETIME" value="172800" />
      </params>
    </task></recipe></recipeSet></job>`;
    expect(reserveTimeOf(task)).toBe(172_800);
    expect(reserveTimeOf('<job><recipeSet><recipe><reservesys duration="3600"/></recipe></recipeSet></job>')).toBe(3600);
    expect(reserveTimeOf('<job><recipeSet><recipe><reservesys/></recipe></recipeSet></job>')).toBe(86_400);
    expect(reserveTimeOf('<job><recipeSet><recipe><task name="/distribution/check-install"/></recipe></recipeSet></job>')).toBeUndefined();
  });
});
